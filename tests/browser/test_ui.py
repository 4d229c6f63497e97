"""The /ui page in a real browser: Playwright for Python driving Debian's `chromium` (Playwright's
own browser download is not used). `make test` installs chromium as root; where it is missing these
tests fail and say what to install, unless OCR_SERVE_SKIP_BROWSER=1 asks to skip them.

Set OCR_SERVE_UI_SCREENSHOT=docs/ui.png to write the README's screenshot (a real photographed page,
scikit-image's `page.png`, which EasyOCR's dependency installs) from the run.
"""

import base64
import concurrent.futures
import io
import json
import os
from pathlib import Path

import httpx
import pytest
from PIL import Image, ImageDraw, ImageFilter, ImageFont
from playwright.sync_api import expect

from tests.support.browser import CHROMIUM_ENV, SKIP_BROWSER_ENV, chromium, launched
from tests.support.images import FONT, render, three_languages_page
from tests.support.live import API_TOKEN, BODY_READ_TIMEOUT_S, PER_CLIENT_LIMIT, held_by_this_machine, slow_upload
from tests.support.waiting import wait_for

MODELS = {"box_model_id": "rapidocr/ppocr-v4-det", "ocr_model_id": "rapidocr/ppocr-v4-rec",
          "tsl_model_id": "apertium/eng-spa"}
# Laid out like images.TWO_PARAGRAPHS, with texts of their own: the manual translation test stores a
# translation of one of them, which no other test may meet.
PARAGRAPHS = [
    ((30, 30), "The red house stands on the hill\nnear the old river."),
    ((30, 125), "My friend reads a good book\nin the quiet garden."),
]
FONT_SIZE = 28
ACCENT = (208, 0, 111)
"""The boxes' outline colour (ui.css --accent)."""
RUN_TIMEOUT_MS = 180_000


@pytest.fixture(scope="module")
def browser():
    with launched() as browser:
        yield browser


class Watched:
    """A tab with what it logged as errors and every URL it asked for."""

    def __init__(self, browser, live):
        self.context = browser.new_context(viewport={"width": 1400, "height": 1000})
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.urls: list[str] = []
        self.page.on("console", lambda message: message.type == "error" and self.errors.append(message.text))
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.on("request", lambda request: self.urls.append(request.url))
        self.live = live

    def other_origins(self) -> list[str]:
        return [url for url in self.urls
                if not url.startswith(self.live.url + "/") and not url.startswith(("data:", "blob:"))]


@pytest.fixture
def tab(browser, live):
    watched = Watched(browser, live)
    yield watched
    watched.context.close()


def two_paragraphs() -> tuple[Image.Image, bytes, list[tuple[int, int, int, int]]]:
    """The image, its PNG file, and each paragraph's ink as (left, top, right, bottom)."""
    image = render(PARAGRAPHS, font_size=FONT_SIZE)
    font = ImageFont.truetype(FONT, FONT_SIZE)
    draw = ImageDraw.Draw(image)
    ink = [tuple(map(int, draw.multiline_textbbox(position, text, font=font, spacing=10)))
           for position, text in PARAGRAPHS]
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return image, buffer.getvalue(), ink


def open_ui(tab: Watched, token: bool = True):
    """/ui with en -> es offered by the handshake, and the API token kept in the tab when asked."""
    assert tab.live.http.post("/set_lang/", json={"lang_src": "en", "lang_dst": "es"}).status_code == 200
    page = tab.page
    page.goto(tab.live.url + "/ui")
    expect(page.locator("#lang_src option").first).to_be_attached()
    if token:
        page.click("#token-box summary")
        page.fill("#token", API_TOKEN)
        page.click("#save-token")
    return page


def choose(page) -> None:
    page.select_option("#lang_src", "en")
    page.select_option("#lang_dst", "es")
    for key, model_id in MODELS.items():
        page.fill(f"#{key}", model_id)


def run_and_wait(page, blocks: int = 2) -> None:
    page.click("#run")
    expect(page.locator("#blocks li")).to_have_count(blocks, timeout=RUN_TIMEOUT_MS)


def api_result(live, png: bytes) -> list[dict]:
    contents = base64.b64encode(png).decode()
    answer = live.http.post("/run_ocrtsl/", json={"contents": contents, "lang_src": "en", "lang_dst": "es", **MODELS})
    assert answer.status_code == 200, answer.text
    return answer.json()["result"]


def image_boxes(page) -> list[tuple[float, float, float, float]]:
    """Each drawn block's overlay in image pixels (left, top, right, bottom), from the page's layout."""
    canvas = page.locator("#canvas")
    frame = canvas.bounding_box()
    width, height = page.locator("#canvas").evaluate("c => [c.width, c.height]")
    boxes = []
    for index in range(page.locator(".box").count()):
        box = page.locator(".box").nth(index).bounding_box()
        sx, sy = width / frame["width"], height / frame["height"]
        boxes.append(((box["x"] - frame["x"]) * sx, (box["y"] - frame["y"]) * sy,
                      (box["x"] + box["width"] - frame["x"]) * sx, (box["y"] + box["height"] - frame["y"]) * sy))
    return boxes


def canvas_pixels(page) -> Image.Image:
    """What the page drew, pixel for pixel in the image's coordinates: the canvas's own bitmap (a
    screenshot would be resampled wherever the layout puts the canvas at a fractional offset)."""
    url = page.locator("#canvas").evaluate("c => c.toDataURL('image/png')")
    return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB")


def dark(pixel) -> bool:
    return sum(pixel) < 200


def ink_explained(shown: Image.Image, truth: Image.Image) -> float:
    """The share of `shown`'s dark pixels that are dark in `truth` too, give or take a pixel (the
    browser's anti-aliasing)."""
    near_ink = truth.convert("L").filter(ImageFilter.MinFilter(3))
    ink = [xy for xy in ((x, y) for x in range(shown.width) for y in range(shown.height)) if dark(shown.getpixel(xy))]
    return sum(near_ink.getpixel(xy) < 140 for xy in ink) / max(1, len(ink))


def test_ui_runs_an_image_and_draws_the_translations_where_the_text_was(tab, live):
    image, png, ink = two_paragraphs()
    expected = api_result(live, png)
    assert len(expected) == 2
    page = open_ui(tab)
    choose(page)
    page.set_input_files("#file", files=[{"name": "two.png", "mimeType": "image/png", "buffer": png}])
    expect(page.locator("#run")).to_be_enabled()
    run_and_wait(page)

    # The DOM: one overlay and one list item per block, with the server's translations and OCR text
    assert page.locator(".box").evaluate_all("boxes => boxes.map(b => b.dataset.tsl)") == [b["tsl"] for b in expected]
    assert page.locator("#blocks .tsl").all_inner_texts() == [b["tsl"] for b in expected]
    assert "casa" in expected[0]["tsl"].lower() and "amigo" in expected[1]["tsl"].lower()
    drawn = image_boxes(page)
    for (left, top, right, bottom), block, (ink_l, ink_t, ink_r, ink_b) in zip(drawn, expected, ink, strict=True):
        l, b, r, t = block["box"]
        assert max(abs(left - l), abs(top - b), abs(right - r), abs(bottom - t)) <= 2
        # where the text was: the box covers the paragraph's ink, give or take a few pixels
        assert left <= ink_l + 6 and top <= ink_t + 6 and right >= ink_r - 6 and bottom >= ink_b - 6
        assert left >= ink_l - 30 and top >= ink_t - 30 and right <= ink_r + 30 and bottom <= ink_b + 30

    # Hovering a box shows its OCR text
    page.locator(".box").first.hover()
    assert page.locator("#tip").inner_text() == expected[0]["ocr"]
    page.mouse.move(1390, 990)  # away: the tip hides
    expect(page.locator("#tip")).to_be_hidden()

    # The pixels: the outlines drawn on each box's edges, new text inside, nothing dark outside
    translated = canvas_pixels(page)
    for l, b, r, t in (block["box"] for block in expected):
        edge = [translated.getpixel((x, b)) for x in range(l + 2, r - 2, 4)]
        assert sum(max(abs(c - a) for c, a in zip(p, ACCENT, strict=True)) < 60 for p in edge) > 0.8 * len(edge)
        inside = translated.crop((l + 3, b + 3, r - 3, t - 3))
        assert sum(dark(p) for p in inside.getdata()) > 200  # the translation's ink
    outside = [(x, y) for x in range(0, translated.width, 3) for y in range(0, translated.height, 3)
               if not any(l - 3 <= x <= r + 3 and b - 3 <= y <= t + 3 for l, b, r, t in (e["box"] for e in expected))]
    assert not [xy for xy in outside if dark(translated.getpixel(xy))]

    # The toggle shows the original: inside the boxes the image's own text again
    page.click("#toggle")
    original = canvas_pixels(page)
    for l, b, r, t in (block["box"] for block in expected):
        region = (l + 3, b + 3, r - 3, t - 3)
        ours, theirs = original.crop(region), image.crop(region)
        assert ink_explained(ours, theirs) > 0.97 and ink_explained(theirs, ours) > 0.97
        assert ink_explained(translated.crop(region), theirs) < 0.8  # the translation's text is another

    # Downloads: the rendered PNG and the JSON result
    with page.expect_download() as png_download:
        page.click("#download-png")
    assert Image.open(png_download.value.path()).size == image.size
    with page.expect_download() as json_download:
        page.click("#download-json")
    assert json_download.value.suggested_filename == "two.json"
    assert json.loads(Path(json_download.value.path()).read_text())["result"] == expected

    assert tab.errors == []
    assert tab.other_origins() == []


def test_ui_paste_flow(tab, live):
    _, png, _ = two_paragraphs()
    page = open_ui(tab)
    choose(page)
    page.evaluate("""(b64) => {
        const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
        const data = new DataTransfer();
        data.items.add(new File([bytes], "clip.png", { type: "image/png" }));
        document.dispatchEvent(new ClipboardEvent("paste", { clipboardData: data, bubbles: true }));
    }""", base64.b64encode(png).decode())
    expect(page.locator("#run")).to_be_enabled()
    run_and_wait(page)
    assert page.locator("#blocks .tsl").all_inner_texts() == [b["tsl"] for b in api_result(live, png)]
    assert tab.errors == [] and tab.other_origins() == []


def test_ui_asks_for_the_token_when_the_server_does(tab, live):
    """The test app wants the token from everyone: naming a model other than the selected one without
    it answers 401, and the page opens its token field and says so."""
    _, png, _ = two_paragraphs()
    page = open_ui(tab, token=False)
    choose(page)
    page.fill("#tsl_model_id", "no/such-model")
    page.set_input_files("#file", files=[{"name": "two.png", "mimeType": "image/png", "buffer": png}])
    page.click("#run")
    expect(page.locator("#state")).to_have_class("error")
    assert "API token" in page.inner_text("#state")
    assert page.locator("#token-box").get_attribute("open") is not None
    assert tab.other_origins() == []


def test_ui_manual_translation_round_trip(tab, live):
    _, png, _ = two_paragraphs()
    page = open_ui(tab)
    choose(page)
    page.set_input_files("#file", files=[{"name": "two.png", "mimeType": "image/png", "buffer": png}])
    run_and_wait(page)
    first = page.locator("#blocks li").first
    ocr = first.locator(".ocr").inner_text()
    mine = "La casa roja está en la colina (a mano)."
    first.get_by_role("button", name="Edit translation").click()
    first.locator("textarea").fill(mine)
    first.get_by_role("button", name="Save translation").click()
    expect(page.locator("#state")).to_contain_text("Saved")
    stored = live.http.get("/get_trans/", params={"text": ocr}).json()["translations"]
    assert {"text": mine, "model": "manual"} in stored
    assert page.locator(".box").first.get_attribute("data-tsl") == mine

    # the other stored translations, the manual one among them
    first.get_by_role("button", name="Other translations").click()
    expect(first.locator(".others")).to_contain_text("manual")
    assert any(text.startswith("apertium/eng-spa") for text in first.locator(".others li").all_inner_texts())

    # a new run answers the manual translation (favor_manual)
    page.reload()
    expect(page.locator("#lang_src option").first).to_be_attached()
    choose(page)
    page.set_input_files("#file", files=[{"name": "two.png", "mimeType": "image/png", "buffer": png}])
    run_and_wait(page)
    assert page.locator("#blocks .tsl").first.inner_text() == mine
    assert tab.errors == [] and tab.other_origins() == []


def test_ui_shows_the_language_detected_in_each_block(tab, live):
    buffer = io.BytesIO()
    three_languages_page().save(buffer, "PNG")
    page = open_ui(tab)
    page.select_option("#lang_src", "auto")
    assert page.locator("#lang_src option[value=auto]").inner_text() == "Detect automatically (auto)"
    page.select_option("#lang_dst", "en")
    for key, model_id in {"box_model_id": "easyocr/craft", "ocr_model_id": "tesseract/jpn+eng+spa",
                          "tsl_model_id": "apertium/spa-eng"}.items():
        page.fill(f"#{key}", model_id)
    page.set_input_files("#file", files=[{"name": "three.png", "mimeType": "image/png", "buffer": buffer.getvalue()}])
    run_and_wait(page, blocks=3)
    assert page.locator("#blocks .lang").all_inner_texts() == [
        "Detected: English", "Detected: Spanish", "Detected: Japanese"]
    assert page.locator("#blocks .tsl").nth(1).inner_text() == "The dog eats bread."  # Spanish, by Apertium
    assert tab.errors == [] and tab.other_origins() == []


def test_ui_status_shows_every_deployment(tab, live):
    page = open_ui(tab)
    page.goto(live.url + "/ui/status")
    expect(page.locator("#report table").first).to_be_attached()
    text = page.inner_text("#report")
    for deployment in live.http.get("/status", headers={"Accept": "application/json"}).json()["deployments"]:
        assert deployment in text
    assert "Unavailable models" in text and "tesseract/tha" in text  # with the reason it is unavailable
    assert "cpu" in text  # a replica's device
    first = page.inner_text("#state")
    expect(page.locator("#state")).not_to_have_text(first, timeout=15_000)
    assert tab.errors == [] and tab.other_origins() == []


def test_ui_under_a_profiles_address_keeps_that_profiles_languages_and_calls_only_its_endpoints(tab, live):
    """No token in the tab: under /r/<key>/ui the key is enough to keep the reader's own languages, and the
    default profile's (the bare paths') stay as they were."""
    address = live.http.post("/profiles/", json={"name": "reader of the ui test"}).json()["path"]
    assert live.http.post("/set_lang/", json={"lang_src": "en", "lang_dst": "es"}).status_code == 200
    page = tab.page
    page.goto(live.url + address + "/ui")
    expect(page.locator("#lang_src option").first).to_be_attached()
    page.select_option("#lang_src", "es")
    page.select_option("#lang_dst", "en")
    page.click("#keep-langs")
    expect(page.locator("#state")).to_contain_text("Languages kept")
    mine, default = httpx.get(live.url + address + "/").json(), live.http.get("/").json()
    assert (mine["lang_src"], mine["lang_dst"]) == ("es", "en")
    assert (default["lang_src"], default["lang_dst"]) == ("en", "es")
    assert page.input_value("#lang_src") == "es"  # the page shows the kept selection
    assert [url for url in tab.urls if not url.startswith((live.url + address + "/", "data:"))] == []
    assert tab.errors == []


def test_ui_retries_when_the_server_is_full(tab, live):
    """Slow uploads from this machine fill its share of the in-flight requests: the page's run is
    answered 503, says it retries after Retry-After, and gets its answer once they time out."""
    _, png, _ = two_paragraphs()
    api_result(live, png)  # stored: the run itself is quick once admitted
    page = open_ui(tab)
    choose(page)
    page.set_input_files("#file", files=[{"name": "two.png", "mimeType": "image/png", "buffer": png}])

    with concurrent.futures.ThreadPoolExecutor(PER_CLIENT_LIMIT) as pool:
        uploads = [pool.submit(slow_upload, live.url, BODY_READ_TIMEOUT_S + 2) for _ in range(PER_CLIENT_LIMIT)]
        wait_for(lambda: held_by_this_machine(live) == PER_CLIENT_LIMIT, 30, "the client's share filling",
                 interval_s=0.05)
        page.click("#run")
        expect(page.locator("#state")).to_contain_text("retrying in", timeout=10_000)
        assert "busy" in page.inner_text("#state")
        assert sorted(future.result() for future in uploads) == [408] * PER_CLIENT_LIMIT
    expect(page.locator("#blocks li")).to_have_count(2, timeout=60_000)
    assert [e for e in tab.errors if "503" not in e] == []  # the browser logs each busy answer
    assert tab.other_origins() == []


def test_ui_files_are_served_under_a_strict_content_security_policy(live):
    for path, media_type in [("/ui", "text/html"), ("/ui/", "text/html"), ("/ui/status", "text/html"),
                             ("/ui/app.js", "text/javascript"), ("/ui/ui.css", "text/css")]:
        answer = httpx.get(live.url + path, follow_redirects=True)  # no token: the page itself is public
        assert answer.status_code == 200 and answer.headers["content-type"].startswith(media_type), path
        policy = answer.headers["content-security-policy"]
        assert "default-src 'none'" in policy and "script-src 'self';" in policy and "unsafe" not in policy
        assert answer.headers["x-content-type-options"] == "nosniff"
    missing = httpx.get(live.url + "/ui/nothing.js")
    assert missing.status_code == 404 and "error" in missing.json()


def test_ui_at_phone_width_and_by_keyboard(browser, live):
    """390 px wide: nothing wider than the screen; the drop zone asks for the file picker from the keyboard,
    and a result's boxes take the focus in turn, each showing its OCR text."""
    _, png, _ = two_paragraphs()
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    try:
        page = context.new_page()
        assert live.http.post("/set_lang/", json={"lang_src": "en", "lang_dst": "es"}).status_code == 200
        page.goto(live.url + "/ui")
        expect(page.locator("#lang_src option").first).to_be_attached()
        page.click("#token-box summary")
        page.fill("#token", API_TOKEN)
        page.click("#save-token")
        choose(page)
        page.locator("#file").evaluate("file => file.addEventListener('click', () => { file.dataset.asked = 'yes'; })")
        page.focus("#drop")
        page.keyboard.press("Enter")  # asks the file input for the picker (headless Chromium shows none)
        expect(page.locator("#file")).to_have_attribute("data-asked", "yes")
        page.set_input_files("#file", files=[{"name": "two.png", "mimeType": "image/png", "buffer": png}])
        run_and_wait(page)
        assert page.locator("html").evaluate("html => html.scrollWidth") <= 390
        assert page.locator("#canvas").bounding_box()["width"] <= 390
        page.locator(".box").first.focus()
        expect(page.locator("#tip")).to_be_visible()
        page.keyboard.press("Tab")
        assert page.locator(".box").nth(1).evaluate("box => box === document.activeElement")
        assert page.inner_text("#tip") == page.locator("#blocks .ocr").nth(1).inner_text()
    finally:
        context.close()


def test_ui_on_a_real_photographed_page(tab, live):
    """scikit-image's photo of a book page (uneven light, grey): the page draws what the API answers."""
    import skimage

    png = (Path(skimage.__file__).parent / "data" / "page.png").read_bytes()
    expected = api_result(live, png)
    assert len(expected) >= 2
    page = open_ui(tab)
    choose(page)
    page.set_input_files("#file", files=[{"name": "page.png", "mimeType": "image/png", "buffer": png}])
    run_and_wait(page, len(expected))
    assert page.locator("#blocks .tsl").all_inner_texts() == [b["tsl"] for b in expected]
    if os.environ.get("OCR_SERVE_UI_SCREENSHOT"):
        page.locator(".box").last.hover()  # the OCR text of the last block, as a reader sees it
        page.screenshot(path=os.environ["OCR_SERVE_UI_SCREENSHOT"])
    assert tab.errors == [] and tab.other_origins() == []


def test_without_chromium_the_browser_tests_say_what_to_install(monkeypatch):
    from _pytest.outcomes import Failed, Skipped

    from tests.support import browser

    monkeypatch.setattr(browser.shutil, "which", lambda name: None)
    monkeypatch.delenv(CHROMIUM_ENV, raising=False)
    monkeypatch.delenv(SKIP_BROWSER_ENV, raising=False)
    with pytest.raises(Failed, match="apt-get install chromium"):
        chromium()
    monkeypatch.setenv(SKIP_BROWSER_ENV, "1")
    with pytest.raises(Skipped):
        chromium()
