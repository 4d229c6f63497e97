"""The server picks the reader (issue 28) through the real Serve app: a reader who only chooses Japanese
reads a Japanese page at once, with the registry's Japanese pair and real models."""

from tests.support.images import CJK_FONT, char_error_rate, encode, render
from tests.support.live import ocrtsl, reset_selection

JAPANESE = "吾輩は猫である。"


def test_set_lang_to_japanese_then_an_image_answers_with_the_japanese_read(live):
    reset_selection(live)
    assert live.http.post("/set_lang/", json={"lang_src": "ja", "lang_dst": "en"}).status_code == 200
    hello = live.http.get("/").json()
    assert (hello["box_selected"], hello["ocr_selected"]) == ("easyocr/craft", "tesseract/jpn")
    contents, md5 = encode(render([((30, 40), JAPANESE)], size=(520, 140), font_size=40, font_path=CJK_FONT))
    response = ocrtsl(live, contents=contents, md5=md5)
    assert response.status_code == 200, response.text
    [block] = response.json()["result"]
    assert char_error_rate(block["ocr"].replace(" ", ""), JAPANESE) <= 0.25, block
