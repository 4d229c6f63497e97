"""Hugging Face models through the real app: tiny random models registered from a folder.

The session's app (conftest) has `tests/support/tiny_hf.py` models in a models folder and their entries in
a registry folder. Outputs of random models are gibberish but deterministic, so the server's
answer is compared with the same model loaded here in the test process.
"""

import concurrent.futures
import shutil
from pathlib import Path

import numpy as np
import pytest

from core.boxes import Box
from core.imaging import crop
from core.options import resolve
from tests.support.images import TWO_PARAGRAPHS, encode, render
from tests.support.live import choose, direct, loaded_here
from tests.support.tiny_hf import M2M100, MARIAN, MARIAN_B, MBART50, MISSING, NLLB, OCR_JA, REMOVABLE


def run_tsl(live, text: str, **body) -> str:
    response = live.http.post("/run_tsl/", json={"text": text, **body})
    assert response.status_code == 200, response.text
    return response.json()["text"]


def test_handshake_offers_the_folder_models_for_their_languages(live):
    choose(live, "ja", "en")
    hello = live.http.get("/").json()
    assert {MARIAN, MARIAN_B, M2M100, NLLB, MBART50, REMOVABLE} <= set(hello["TSLModels"])
    assert OCR_JA in hello["OCRModels"]
    assert MISSING not in hello["TSLModels"]
    choose(live, "ja", "es")
    hello = live.http.get("/").json()
    assert M2M100 in hello["TSLModels"] and MARIAN not in hello["TSLModels"]


def test_run_tsl_uses_the_selected_model_and_a_request_may_name_its_own(live):
    choose(live, tsl_model_id=MARIAN)
    text = "selected model test"
    assert run_tsl(live, text) == direct(live, MARIAN, text)
    other = run_tsl(live, text + " b", tsl_model_id=MARIAN_B)
    assert other == direct(live, MARIAN_B, text + " b")
    assert other != direct(live, MARIAN, text + " b")


@pytest.mark.parametrize("model_id", [M2M100, NLLB, MBART50])
def test_many_to_many_families_translate_through_the_server(live, model_id):
    choose(live, "ja", "en")
    text = f"many to many {model_id}"
    assert run_tsl(live, text, tsl_model_id=model_id) == direct(live, model_id, text)
    spanish = run_tsl(live, text, tsl_model_id=M2M100, lang_dst="es")
    assert spanish == direct(live, M2M100, text, dst="es")


def test_generation_options_are_listed_validated_and_honoured(live):
    choose(live, tsl_model_id=MARIAN)
    options = live.http.get("/get_active_options/").json()["options"]["tsl_model"]
    assert options["max_new_tokens"]["type"] == "int" and "num_beams" in options
    text = "short output please"
    short = run_tsl(live, text, options={MARIAN: {"max_new_tokens": "2"}})
    assert short == direct(live, MARIAN, text, max_new_tokens=2)
    assert len(short) < len(direct(live, MARIAN, text))
    response = live.http.post("/run_tsl/", json={"text": text, "options": {MARIAN: {"num_beams": 0}}})
    assert response.status_code == 400 and "num_beams" in response.json()["error"]


def test_run_ocrtsl_reads_with_a_vision_encoder_decoder_and_translates(live):
    choose(live, box_model_id="easyocr/craft", ocr_model_id=OCR_JA, tsl_model_id=M2M100)
    before = live.stats("OCRReader")["calls"].get(OCR_JA, 0)
    contents, md5 = encode(render(TWO_PARAGRAPHS))
    response = live.http.post("/run_ocrtsl/", json={"md5": md5, "contents": contents})
    assert response.status_code == 200, response.text
    blocks = response.json()["result"]
    assert len(blocks) == 2
    assert live.stats("OCRReader")["calls"][OCR_JA] > before  # read by the folder's model
    reader = loaded_here(live, OCR_JA, "ocr")
    assert reader.entry.reads == "block"
    image = np.asarray(render(TWO_PARAGRAPHS).convert("RGB"))
    for block in blocks:
        read_here = reader.read([crop(image, Box(*block["box"]))], "ja", resolve(reader.entry.option_specs, None))
        assert block["ocr"] == read_here[0]  # the server read the block with the folder's model
        assert block["ocr"] == "".join(block["ocr"].split())  # strip_spaces for Japanese
        assert block["tsl"] == (direct(live, M2M100, block["ocr"]) if block["ocr"] else "")


def test_least_recently_used_model_is_unloaded_at_the_configured_size(live):
    choose(live, "ja", "en")
    # configs/local.yaml keeps 2 translation models per replica.
    for model_id in (NLLB, MBART50, M2M100):
        run_tsl(live, f"lru {model_id}", tsl_model_id=model_id)
    loads = live.stats("Translator")["loads"].get(NLLB, 0)
    run_tsl(live, "lru again", tsl_model_id=NLLB)
    assert live.stats("Translator")["loads"][NLLB] == loads + 1, "NLLB should have been evicted and reloaded"


def test_switching_the_selected_model_in_flight_fails_no_request(live):
    choose(live, tsl_model_id=MARIAN)

    def translate(i: int) -> int:
        return live.http.post("/run_tsl/", json={"text": f"in flight {i}"}).status_code

    def switch(i: int) -> int:
        return live.http.post("/set_models/", json={"tsl_model_id": MARIAN_B if i % 2 else MARIAN}).status_code

    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        calls = [pool.submit(translate, i) for i in range(16)] + [pool.submit(switch, i) for i in range(4)]
        assert [call.result() for call in calls] == [200] * 20


def test_missing_or_removed_weights_answer_400_naming_the_folders_searched(live):
    models_dir = live.app_args["weights"]["models_dirs"][0]
    choose(live, "ja", "en")
    response = live.http.post("/set_models/", json={"tsl_model_id": MISSING})
    assert response.status_code == 400
    assert str(Path(models_dir) / MISSING) in response.json()["error"]

    shutil.rmtree(Path(models_dir) / REMOVABLE)
    response = live.http.post("/set_models/", json={"tsl_model_id": REMOVABLE})
    assert response.status_code == 400
    assert str(Path(models_dir) / REMOVABLE) in response.json()["error"]
    assert live.http.get("/").json()["tsl_selected"] != REMOVABLE
