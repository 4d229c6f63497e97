"""The rendered pages of the reading benchmark: what the real images (manifest.yaml) lack.

Manga-style vertical Japanese in speech bubbles, vertical Chinese (simplified and traditional), signs that
mix scripts, coloured text on photo-like backgrounds, rotated lines. Every page is drawn here with Pillow
from Debian's fonts (fonts-dejavu-core, fonts-noto-cjk; fonts-wqy-microhei where Noto CJK is absent), each
block on a layer of its own, so the ground truth is exact: a block's text is what was drawn and its box is
the bounding box of its own ink (after any rotation). Writes images/rendered/*.png and rendered.yaml, the
same schema as manifest.yaml; the pages are kept in the repository, so the benchmark never depends on the
fonts of the machine that runs it.

    .venv/bin/python bench/reading/render.py [--out bench/reading]

Texts are written for this benchmark, but for three poems in the public domain (Li Bai, Meng Haoran, Du Mu).
Vertical text is set glyph by glyph (a column of cells, right to left): long vowel marks, brackets and dashes
turned a quarter, small punctuation and small kana moved to the top right of their cell, as Japanese and
Chinese vertical setting does; it needs no libraqm.
"""

import argparse
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml
from PIL import Image, ImageDraw, ImageFilter, ImageFont

HERE = Path(__file__).resolve().parent
DEJAVU = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
DEJAVU_BOLD = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"
DEJAVU_SERIF = "/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf"
NOTO_SANS = "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"
NOTO_SANS_BOLD = "/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc"
NOTO_SERIF = "/usr/share/fonts/opentype/noto/NotoSerifCJK-Regular.ttc"
WQY = "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"
NOTO_INDEX = {"ja": 0, "ko": 1, "zh": 2, "zht": 3}
"""Faces of the Noto CJK collections: Japanese, Korean, simplified and traditional Chinese."""
PAD = 400
"""Margin of a block's layer beyond the page, in pixels."""
INK_THRESHOLD = 96
"""A layer's pixel is ink above this alpha (of 255): its box leaves out the faintest anti-aliasing."""

TURNED = set("ー－―‐-〜～…‥「」『』（）()【】〈〉《》[]")
"""Glyphs a vertical column sets turned a quarter clockwise."""
SMALL_PUNCTUATION = set("、。，．,.")
SMALL_KANA = set("ぁぃぅぇぉっゃゅょゎァィゥェォッャュョヮヵヶ")


def font(kind: str, size: int, lang: str = "ja") -> ImageFont.FreeTypeFont:
    """A font of the kind asked ("sans", "bold", "serif" for CJK faces; "latin", "latin-bold", "latin-serif")."""
    latin = {"latin": DEJAVU, "latin-bold": DEJAVU_BOLD, "latin-serif": DEJAVU_SERIF}
    if kind in latin:
        return ImageFont.truetype(latin[kind], size)
    path = {"sans": NOTO_SANS, "bold": NOTO_SANS_BOLD, "serif": NOTO_SERIF}[kind]
    if Path(path).exists():
        index = NOTO_INDEX[lang] if kind != "serif" else min(NOTO_INDEX[lang], 2 if lang != "zht" else 3)
        return ImageFont.truetype(path, size, index=index)
    return ImageFont.truetype(WQY, size)


def font_name(f: ImageFont.FreeTypeFont) -> str:
    family, style = f.getname()
    return f"{family} {style}"


@dataclass
class Block:
    text: str
    box: list[int]
    optional: bool = False


@dataclass
class Page:
    name: str
    language: str
    size: tuple[int, int]
    what: str
    image: Image.Image = None
    blocks: list[Block] = field(default_factory=list)
    fonts: set[str] = field(default_factory=set)
    vertical: bool = False
    order_scored: bool = True
    photo: bool = False

    def __post_init__(self):
        self.image = Image.new("RGB", self.size, "white")

    def layer(self) -> Image.Image:
        """A transparent layer of the page's size with a margin of PAD all round (page point (x, y) is the
        layer's (x + PAD, y + PAD)), so that a line drawn past the edge and turned back in is whole."""
        return Image.new("RGBA", (self.size[0] + 2 * PAD, self.size[1] + 2 * PAD), (0, 0, 0, 0))

    def add(self, layer: Image.Image, text: str, angle: float = 0, centre=None, optional: bool = False) -> None:
        """Composite a block's layer (turned by `angle` degrees counter-clockwise about `centre`, in page
        points) and note its text and the box of its ink."""
        if angle:
            layer = layer.rotate(angle, resample=Image.BICUBIC, center=(centre[0] + PAD, centre[1] + PAD))
        layer = layer.crop((PAD, PAD, PAD + self.size[0], PAD + self.size[1]))
        alpha = np.asarray(layer.getchannel("A"))
        ys, xs = np.nonzero(alpha > INK_THRESHOLD)
        assert len(xs), f"{self.name}: block {text!r} has no ink on the page"
        self.image.paste(layer, (0, 0), layer)
        self.blocks.append(Block(text, [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1],
                                 optional))

    def horizontal(self, xy, lines: list[str], f, fill, angle: float = 0, spacing: int = 6, stroke=None,
                   anchor: str = "la", optional: bool = False) -> None:
        layer = self.layer()
        draw = ImageDraw.Draw(layer)
        text = "\n".join(lines)
        extra = {"stroke_width": stroke[0], "stroke_fill": stroke[1]} if stroke else {}
        at = (xy[0] + PAD, xy[1] + PAD)
        draw.multiline_text(at, text, font=f, fill=fill, spacing=spacing, anchor=anchor,
                            align="center" if anchor[0] == "m" else "left", **extra)
        left, top, right, bottom = (v - PAD for v in draw.multiline_textbbox(at, text, font=f, spacing=spacing,
                                                                              anchor=anchor))
        self.fonts.add(font_name(f))
        self.add(layer, text, angle, ((left + right) / 2, (top + bottom) / 2), optional)

    def vertical_columns(self, right_x: int, top_y: int, columns: list[str], f, fill, gap: float = 0.4,
                         angle: float = 0) -> None:
        """Columns read right to left, the first at `right_x` (its right edge), one block."""
        layer = self.layer()
        size = f.size
        x = right_x - size
        for column in columns:
            vertical_column(layer, x + PAD, top_y + PAD, column, f, fill)
            x -= int(size * (1 + gap))
        self.fonts.add(font_name(f))
        self.vertical = True
        self.add(layer, "\n".join(columns), angle, (right_x, top_y))


def vertical_column(layer: Image.Image, left: int, top: int, text: str, f, fill) -> None:
    """One column, glyph by glyph, in cells of the font's size."""
    size = f.size
    draw = ImageDraw.Draw(layer)
    y = top
    for char in text:
        if char == " ":
            y += size // 2
            continue
        if char in TURNED:
            cell = Image.new("RGBA", (size * 2, size * 2), (0, 0, 0, 0))
            ImageDraw.Draw(cell).text((size, size), char, font=f, fill=fill, anchor="mm")
            cell = cell.rotate(-90, resample=Image.BICUBIC)
            layer.alpha_composite(cell, (left - size // 2, y - size // 2))
        elif char in SMALL_PUNCTUATION:
            draw.text((left + size * 0.62, y + size * 0.05), char, font=f, fill=fill, anchor="lm")
        elif char in SMALL_KANA:
            draw.text((left + size // 2 + size * 0.08, y + size // 2 - size * 0.08), char, font=f, fill=fill,
                      anchor="mm")
        else:
            draw.text((left + size // 2, y + size // 2), char, font=f, fill=fill, anchor="mm")
        y += int(size * 1.02)


# -- backgrounds -----------------------------------------------------------------------------------------
def photo_background(size, seed: int, palette) -> Image.Image:
    """A photo-like ground: a smooth two-colour gradient, soft blobs of light and shade, fine grain."""
    rng = np.random.RandomState(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    t = (xx / w * rng.uniform(0.3, 1) + yy / h * rng.uniform(0.3, 1))
    t = (t - t.min()) / (t.max() - t.min())
    a, b = (np.array(c, np.float32) for c in palette)
    img = a[None, None, :] * (1 - t[..., None]) + b[None, None, :] * t[..., None]
    for _ in range(14):
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(40, 220)
        strength = rng.uniform(-60, 60)
        img += strength * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))[..., None]
    img += rng.normal(0, 6, img.shape)
    image = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    return image.filter(ImageFilter.GaussianBlur(0.6))


def manga_background(page: Page, seed: int, panels: list[tuple[int, int, int, int]]) -> None:
    """Panels with borders, screentone in parts, speed lines: what surrounds a manga's bubbles. Each panel
    is drawn on its own, so nothing crosses the white gutters."""
    rng = np.random.RandomState(seed)
    for left, top, right, bottom in panels:
        w, h = right - left, bottom - top
        panel = Image.new("RGB", (w, h), "white")
        draw = ImageDraw.Draw(panel)
        tone = rng.uniform(0.2, 0.6)
        for y in range(4, h - 4, 6):
            for x in range(4 + (y // 6 % 2) * 3, w - 4, 6):
                if rng.uniform() < tone and x > w * 0.45:
                    draw.ellipse([x - 1, y - 1, x + 1, y + 1], fill=(90, 90, 90))
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        for _ in range(24):
            angle = rng.uniform(0, 2 * np.pi)
            r0, r1 = rng.uniform(60, 120), rng.uniform(200, 400)
            draw.line([(cx + r0 * np.cos(angle), cy + r0 * np.sin(angle)),
                       (cx + r1 * np.cos(angle), cy + r1 * np.sin(angle))], fill=(40, 40, 40), width=1)
        page.image.paste(panel, (left, top))
    draw = ImageDraw.Draw(page.image)
    for left, top, right, bottom in panels:
        draw.rectangle([left, top, right, bottom], outline="black", width=3)


def bubble(page: Page, box, tail=None) -> None:
    draw = ImageDraw.Draw(page.image)
    if tail:
        draw.polygon(tail, fill="white", outline="black", width=3)
    draw.ellipse(box, fill="white", outline="black", width=3)
    if tail:  # the tail's root, inside the bubble, white again
        inner = [(x, y) for x, y in tail[:2]]
        draw.line(inner, fill="white", width=5)


# -- the pages -----------------------------------------------------------------------------------------------
def manga_1() -> Page:
    page = Page("ja-manga-bubbles-1", "ja", (640, 900), "manga-style page: vertical Japanese in three bubbles")
    manga_background(page, 11, [(20, 20, 620, 440), (20, 460, 620, 880)])
    f = font("bold", 30, "ja")
    bubble(page, (385, 38, 610, 372), [(470, 360), (520, 358), (500, 420)])
    page.vertical_columns(545, 92, ["ちょっと待って！", "まだ話は", "終わってない"], f, "black", gap=0.25)
    bubble(page, (90, 120, 300, 400), [(250, 380), (280, 360), (330, 420)])
    page.vertical_columns(245, 170, ["明日の朝、", "駅で会おう"], f, "black", gap=0.35)
    bubble(page, (330, 500, 560, 800), [(360, 760), (400, 780), (340, 850)])
    page.vertical_columns(500, 548, ["本当に", "それでいいの？"], f, "black", gap=0.35)
    return page


def manga_2() -> Page:
    page = Page("ja-manga-bubbles-2", "ja", (640, 900), "manga-style page: narration box, bubbles, a sound effect")
    manga_background(page, 12, [(20, 20, 620, 520), (20, 540, 620, 880)])
    draw = ImageDraw.Draw(page.image)
    draw.rectangle((500, 40, 598, 300), fill="white", outline="black", width=2)
    page.vertical_columns(584, 58, ["その夜、", "町は静かだった"], font("serif", 26, "ja"), "black", gap=0.3)
    bubble(page, (250, 70, 440, 330), [(300, 320), (340, 322), (300, 390)])
    page.vertical_columns(385, 120, ["誰か", "いるのか？"], font("bold", 30, "ja"), "black", gap=0.4)
    page.horizontal((140, 420), ["ガタッ"], font("bold", 64, "ja"), (20, 20, 20), angle=12,
                    stroke=(3, "white"))
    bubble(page, (360, 570, 590, 860), [(380, 600), (410, 590), (330, 560)])
    page.vertical_columns(530, 625, ["気のせいだよ、", "もう寝よう"], font("bold", 28, "ja"), "black", gap=0.4)
    return page


def vertical_poem(name: str, lang: str, title: str, author: str, verses: list[str], seed: int) -> Page:
    page = Page(name, lang, (620, 560), "vertical Chinese on paper: title, poet, four verses, right to left")
    page.image, page.photo = photo_background(page.size, seed, ((246, 240, 226), (232, 222, 200))), True
    page.vertical_columns(575, 60, [title], font("serif", 40, lang), (30, 25, 20))
    page.vertical_columns(505, 230, [author], font("serif", 26, lang), (90, 60, 40))
    page.vertical_columns(430, 60, verses, font("serif", 36, lang), (20, 20, 20), gap=0.7)
    return page


def sign(name: str, lang: str, rows: list[tuple[str, str]], colours, cjk: bool = True,
         extra: tuple[str, str] | None = None) -> Page:
    """A station-like sign: per row a large line in the page's script and a small English one under it."""
    page = Page(name, lang, (760, 120 + 150 * len(rows)), "a sign mixing scripts: each row in "
                f"{lang} with English under it")
    background, panel, ink, accent = colours
    page.image = photo_background(page.size, len(name), (background, tuple(max(0, c - 40) for c in background)))
    page.photo = True
    draw = ImageDraw.Draw(page.image)
    draw.rounded_rectangle((30, 30, 730, page.size[1] - 30), radius=18, fill=panel)
    big = font("bold", 52, lang) if cjk else font("latin-bold", 46)
    small = font("latin", 26)
    for k, (native, english) in enumerate(rows):
        y = 70 + 150 * k
        draw.rectangle((60, y + 8, 110, y + 58), fill=accent)
        page.horizontal((140, y), [native], big, ink)
        page.horizontal((142, y + 72), [english], small, ink)
    if extra:
        page.horizontal((700, page.size[1] - 58), [extra[0]], font("sans", 22, extra[1]) if extra[1] != "latin"
                        else font("latin", 22), ink, anchor="rs")
    return page


def poster(name: str, lang: str, palette, items: list[dict], seed: int, size=(800, 560)) -> Page:
    page = Page(name, lang, size, "coloured text on a photo-like background")
    page.image, page.photo = photo_background(size, seed, palette), True
    for item in items:
        page.horizontal(item["xy"], item["lines"], item["font"], item["fill"], angle=item.get("angle", 0),
                        stroke=item.get("stroke"), spacing=item.get("spacing", 8))
    return page


def rotated(name: str, lang: str, items: list[tuple], seed: int, size=(800, 600)) -> Page:
    page = Page(name, lang, size, "lines turned by a few to ninety degrees")
    page.image, page.photo = photo_background(size, seed, ((250, 250, 246), (226, 228, 230))), True
    for xy, lines, f, angle in items:
        page.horizontal(xy, lines, f, (25, 25, 30), angle=angle)
    return page


def pages() -> list[Page]:
    latin, latin_bold = font("latin", 30), font("latin-bold", 40)
    return [
        manga_1(),
        manga_2(),
        vertical_poem("zh-vertical-poem", "zh", "静夜思", "李白", ["床前明月光，", "疑是地上霜。", "举头望明月，",
                                                                     "低头思故乡。"], 21),
        vertical_poem("zht-vertical-poem", "zht", "春曉", "孟浩然", ["春眠不覺曉，", "處處聞啼鳥。", "夜來風雨聲，",
                                                                        "花落知多少。"], 22),
        vertical_poem("zht-vertical-poem-2", "zht", "山行", "杜牧", ["遠上寒山石徑斜，", "白雲生處有人家。",
                                                                      "停車坐愛楓林晚，", "霜葉紅於二月花。"], 23),
        sign("ja-sign-mixed", "ja", [("東口", "East Exit"), ("みどりの窓口", "Ticket Office"),
                                     ("お手洗い", "Toilets")], ((40, 60, 90), (20, 70, 140), "white", (250, 200, 0)),
             extra=("出口 출구 出口", "ja")),
        sign("ko-sign-mixed", "ko", [("출구", "Exit"), ("지하철 2호선", "Subway Line 2"), ("화장실", "Restrooms")],
             ((60, 70, 60), (245, 245, 240), (20, 20, 20), (0, 150, 80))),
        sign("zh-sign-mixed", "zh", [("地铁站", "Metro Station"), ("北京路", "Beijing Road"), ("售票处", "Tickets")],
             ((90, 30, 30), (0, 90, 60), "white", (255, 255, 255))),
        sign("zht-sign-mixed", "zht", [("捷運站", "MRT Station"), ("出口", "Exit"), ("禁止吸菸", "No Smoking")],
             ((50, 50, 60), (30, 60, 120), "white", (230, 60, 40))),
        sign("ru-sign-mixed", "ru", [("Выход в город", "Exit to the city"), ("Кассы", "Ticket office"),
                                     ("Метро", "Metro")], ((70, 50, 40), (200, 30, 40), "white", (255, 255, 255)),
             cjk=False),
        poster("fr-poster-colour", "fr", ((200, 120, 60), (60, 90, 150)), [
            {"xy": (60, 60), "lines": ["Grande fête du village"], "font": font("latin-bold", 46),
             "fill": (255, 240, 80), "stroke": (2, (60, 30, 0))},
            {"xy": (60, 160), "lines": ["Samedi 14 juin, sur la place", "de l'église, à partir de 18 h"],
             "font": latin, "fill": "white"},
            {"xy": (60, 300), "lines": ["Musique, crêpes et jeux"], "font": font("latin-bold", 34),
             "fill": (140, 255, 200)},
            {"xy": (420, 460), "lines": ["Entrée libre"], "font": latin_bold, "fill": (255, 90, 90),
             "stroke": (2, "white")}], 31),
        poster("de-poster-colour", "de", ((30, 80, 40), (170, 190, 120)), [
            {"xy": (50, 50), "lines": ["Wochenmarkt"], "font": font("latin-bold", 56), "fill": (255, 255, 255),
             "stroke": (2, (20, 40, 20))},
            {"xy": (50, 160), "lines": ["Frisches Obst und Gemüse", "jeden Donnerstag ab 8 Uhr"], "font": latin,
             "fill": (255, 230, 120)},
            {"xy": (380, 400), "lines": ["Äpfel 2,50 € pro Kilo"], "font": font("latin-bold", 32),
             "fill": (200, 20, 30), "stroke": (2, "white")}], 32),
        poster("es-poster-colour", "es", ((20, 40, 90), (230, 150, 60)), [
            {"xy": (60, 70), "lines": ["Abierto todos los días"], "font": font("latin-bold", 44),
             "fill": (255, 255, 255)},
            {"xy": (60, 170), "lines": ["Desayunos, comidas y cenas", "en el centro de la ciudad"], "font": latin,
             "fill": (255, 220, 90)},
            {"xy": (60, 420), "lines": ["¡Pruebe nuestra paella!"], "font": font("latin-bold", 36),
             "fill": (40, 20, 10), "stroke": (2, (255, 240, 200))}], 33),
        poster("ru-poster-colour", "ru", ((120, 20, 40), (240, 180, 80)), [
            {"xy": (50, 60), "lines": ["Добро пожаловать!"], "font": font("latin-bold", 50), "fill": "white",
             "stroke": (2, (60, 0, 10))},
            {"xy": (50, 170), "lines": ["Выставка старинных книг", "с 1 по 30 сентября"], "font": latin,
             "fill": (255, 240, 160)},
            {"xy": (330, 420), "lines": ["Вход свободный"], "font": font("latin-bold", 36), "fill": (20, 40, 90),
             "stroke": (2, (255, 255, 255))}], 34),
        poster("ko-poster-colour", "ko", ((250, 200, 120), (200, 80, 60)), [
            {"xy": (60, 60), "lines": ["오늘의 메뉴"], "font": font("bold", 56, "ko"), "fill": (90, 20, 10),
             "stroke": (2, (255, 250, 230))},
            {"xy": (60, 180), "lines": ["김치찌개 8,000원", "비빔밥 9,000원"], "font": font("sans", 34, "ko"),
             "fill": (255, 255, 255), "spacing": 14},
            {"xy": (380, 430), "lines": ["맛있게 드세요"], "font": font("bold", 40, "ko"), "fill": (30, 60, 140),
             "stroke": (2, (255, 255, 255))}], 35),
        poster("zht-poster-colour", "zht", ((30, 30, 60), (160, 40, 60)), [
            {"xy": (60, 60), "lines": ["歡迎光臨"], "font": font("bold", 64, "zht"), "fill": (255, 210, 60)},
            {"xy": (60, 190), "lines": ["本店營業時間：上午十點至晚上九點"], "font": font("sans", 30, "zht"),
             "fill": "white"},
            {"xy": (60, 400), "lines": ["新鮮水果 每日特價"], "font": font("bold", 40, "zht"),
             "fill": (120, 255, 160), "stroke": (2, (0, 40, 0))}], 36),
        poster("zh-poster-colour", "zh", ((20, 90, 110), (240, 230, 180)), [
            {"xy": (60, 60), "lines": ["夏季大减价"], "font": font("bold", 60, "zh"), "fill": (255, 60, 40),
             "stroke": (3, "white")},
            {"xy": (60, 190), "lines": ["全场商品八折起", "活动时间：七月一日至七月十五日"],
             "font": font("sans", 30, "zh"), "fill": (255, 255, 255), "spacing": 12},
            {"xy": (400, 440), "lines": ["欢迎选购"], "font": font("bold", 44, "zh"), "fill": (20, 40, 120)}], 37),
        rotated("de-rotated-lines", "de", [
            ((60, 60), ["Bitte nicht stören"], latin_bold, -6),
            ((80, 220), ["Der Zug nach Hamburg fährt heute", "von Gleis 7 ab."], latin, 9),
            ((420, 470), ["Ausgang rechts"], latin_bold, -15)], 41),
        rotated("fr-rotated-lines", "fr", [
            ((80, 80), ["Attention : sol glissant"], latin_bold, 8),
            ((90, 260), ["La boulangerie est fermée", "le lundi et le mardi."], latin, -5),
            ((560, 290), ["Rayon des livres anciens"], font("latin", 28), 90)], 42),
        rotated("es-rotated-lines", "es", [
            ((60, 90), ["Prohibido fumar"], latin_bold, -10),
            ((100, 280), ["El museo abre a las diez", "y cierra a las seis."], latin, 4),
            ((380, 470), ["Salida de emergencia"], font("latin-bold", 32), 18)], 43),
        rotated("ru-rotated-lines", "ru", [
            ((70, 80), ["Осторожно, двери закрываются"], font("latin-bold", 34), 5),
            ((90, 260), ["Библиотека открыта", "с девяти до восьми."], latin, -8),
            ((460, 480), ["Не курить"], latin_bold, 20)], 44),
        rotated("en-rotated-lines", "en", [
            ((60, 80), ["Mind the gap"], latin_bold, -12),
            ((120, 250), ["The bakery opens at seven", "every morning but Sunday."], latin, 6),
            ((600, 300), ["Fire exit this way"], font("latin", 28), 90)], 45),
    ]


def entry(page: Page, file: str) -> dict:
    return {
        "file": file,
        "language": page.language,
        "kind": "rendered",
        "what": page.what,
        **({"vertical": True} if page.vertical else {}),
        **({} if page.order_scored else {"order_scored": False}),
        "source": {"generator": "bench/reading/render.py", "fonts": sorted(page.fonts)},
        "license": "Apache-2.0 (this project)",
        "blocks": [{"box": block.box, "text": block.text, **({"optional": True} if block.optional else {})}
                   for block in page.blocks],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=HERE, help="folder of rendered.yaml and images/rendered/")
    options = parser.parse_args()
    folder = options.out / "images" / "rendered"
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for page in pages():
        # Photo-like grounds (grain and blur) are JPEG, as photos are; flat drawings PNG.
        file = f"rendered/{page.name}.{'jpg' if page.photo else 'png'}"
        page.image.save(options.out / "images" / file, **({"quality": 88} if page.photo else {"optimize": True}))
        entries.append(entry(page, file))
        print(f"{file}: {len(page.blocks)} blocks")
    header = ("# Written by bench/reading/render.py (do not edit: run it again). The rendered pages of the reading\n"
              "# benchmark, with the ground truth the renderer knows: each block's text and the box of its ink.\n")
    (options.out / "rendered.yaml").write_text(
        header + yaml.safe_dump({"images": entries}, allow_unicode=True, sort_keys=False, width=120))


if __name__ == "__main__":
    main()
