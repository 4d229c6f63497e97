"""BoxDetector batches whole images of concurrent requests (configs/gpu.yaml asks for 8), counted in
forward passes with a batch that fires when it is full (as tests/serve/test_batching.py does for OCR and
translation): each request still gets the blocks of its own image (edges within 3 px of the image's alone)."""

import concurrent.futures
from collections.abc import Iterator

import pytest

from tests.support.declared_apps import DeclaredApp, counted, declared_app, full_batches
from tests.support.images import encode, render

DETECTOR = "rapidocr/ppocr-v4-det"


@pytest.fixture(scope="module")
def app(live, tmp_path_factory) -> Iterator[DeclaredApp]:
    with declared_app(live, tmp_path_factory.mktemp("detection_data"), "detection") as declared:
        yield declared


def sign(number: int, size: tuple[int, int]) -> tuple[str, str, str]:
    text = f"Platform {number} closed"
    return (*encode(render([((20, 20), text)], size=size)), text)


def read_concurrently(app: DeclaredApp, bodies: list[dict]) -> list[list[dict]]:
    def send(body: dict) -> list[dict]:
        response = app.http.post("/run_ocrtsl/", json=body)
        assert response.status_code == 200, response.text
        return response.json()["result"]

    with concurrent.futures.ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(send, bodies))


def test_images_of_concurrent_requests_share_one_forward_pass_and_keep_their_own_blocks(app):
    # Images of different sizes (one canvas), and one with other box options: its own group.
    signs = [sign(1, (640, 120)), sign(22, (500, 160)), sign(333, (600, 100)), sign(4444, (560, 140))]
    bodies = [{"contents": contents, "md5": md5, "tsl_model_id": "original"} for contents, md5, _ in signs]
    bodies[3]["options"] = {DETECTOR: {"merge_line_gap": 0.2}}
    alone = [read_concurrently(app, [body])[0] for body in bodies]  # one by one, the default
    assert all(len(answer) == 1 and answer[0]["ocr"].startswith("Platform") for answer in alone), alone
    again = [{**body, "force": True} for body in bodies]
    with full_batches(app, "BoxDetector", len(bodies)):
        answers, calls, items = counted(app, "BoxDetector", DETECTOR, lambda: read_concurrently(app, again))
    assert (calls, items) == (2, 4)  # two groups of options: two forward passes for four images
    # The same blocks and text as alone: edges within the 3 px that padding may move them, and so
    # the same letters (the recognizer may see a space more or less in a crop a pixel wider).
    def letters(answer: list[dict]) -> list[str]:
        return ["".join(block["ocr"].split()) for block in answer]

    for answer, expected, (_, _, text) in zip(answers, alone, signs, strict=True):
        assert letters(answer) == letters(expected) == ["".join(text.split())]
        for block, other in zip(answer, expected, strict=True):
            assert max(abs(a - b) for a, b in zip(block["box"], other["box"], strict=True)) <= 3, (block, other)
