"""The server picks the reader (issue 28) through the real Serve app: a reader who only chooses Japanese
reads a Japanese page at once, with the registry's Japanese pair and real models."""

import uuid

from tests.support.images import CJK_FONT, char_error_rate, encode, render, render_columns

JAPANESE = "吾輩は猫である。"


def test_set_lang_to_japanese_then_an_image_answers_with_the_japanese_read(live):
    """A new reader profile, reading English first: it has no choice of its own for Japanese (other tests
    of the session chose Japanese models for the default profile, whose selection a new profile starts with
    and which remembers its choices)."""
    reader = live.http.post("/profiles/", json={"name": f"ja-{uuid.uuid4().hex[:6]}"}).json()["path"]
    assert live.http.post(f"{reader}/set_lang/", json={"lang_src": "en", "lang_dst": "es"}).status_code == 200
    assert live.http.post(f"{reader}/set_lang/", json={"lang_src": "ja", "lang_dst": "en"}).status_code == 200
    hello = live.http.get(f"{reader}/").json()
    assert (hello["box_selected"], hello["ocr_selected"]) == ("easyocr/craft", "tesseract/jpn")
    contents, md5 = encode(render([((30, 40), JAPANESE)], size=(520, 140), font_size=40, font_path=CJK_FONT))
    response = live.http.post(f"{reader}/run_ocrtsl/", json={"contents": contents, "md5": md5})
    assert response.status_code == 200, response.text
    [block] = response.json()["result"]
    assert char_error_rate(block["ocr"].replace(" ", ""), JAPANESE) <= 0.25, block


def test_vertical_japanese_is_read_column_by_column_right_to_left(live):
    """Two columns of one block: the registry's Japanese pair reads them with Tesseract's vertical model,
    the right column first."""
    reader = live.http.post("/profiles/", json={"name": f"ja-vert-{uuid.uuid4().hex[:6]}"}).json()["path"]
    assert live.http.post(f"{reader}/set_lang/", json={"lang_src": "ja", "lang_dst": "en"}).status_code == 200
    columns = ["明日の朝", "駅で会おう"]
    contents, md5 = encode(render_columns(columns))
    response = live.http.post(f"{reader}/run_ocrtsl/", json={"contents": contents, "md5": md5})
    assert response.status_code == 200, response.text
    [block] = response.json()["result"]
    read = block["ocr"].replace(" ", "")
    assert char_error_rate(read, "\n".join(columns)) <= 0.2, block
    assert read.index("明") < read.index("駅"), block  # the right column first
