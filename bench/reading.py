"""Reading quality on real pages in real languages: how well the server finds and reads text, per image,
per language and overall, on the development set in bench/reading/ (real photos, screenshots, scans and
document pages from permissively licensed packages, manifest.yaml; rendered pages for what those lack,
rendered.yaml). Only reading counts: the translation model is `original` (the text as read).

The app of `--config` (configs/local.yaml) runs on a local Ray cluster of its own, Ray's token
authentication on, with a data folder of its own; every call is the extension's HTTP API:

- pairs: for each language, `set_lang` to it, then every box x OCR model pair its handshake offers is
  selected with `set_models` and every image of the language sent to `run_ocrtsl`; the best pair of a
  language is the one with the lowest mean page CER over its images (then the higher block recall);
- the server's own choice: a new reader profile (the config's default selection), then `set_lang` to the
  language and no model chosen but the pass-through translator: the box and OCR models the server selects
  read the images. Where it selects no OCR model the server reads nothing (reported as such, every block
  missed, CER 1);
- the original (django-ocr-translate) with its default EasyOCR pipeline, on the images of the languages it
  reads offline (English: bench/original_server.py's bench plugin), where its virtualenv
  bench/.original-venv exists; else skipped, with the reason.

Scores (bench/reading/scoring.py): page CER, block recall and precision with the merges and splits behind
them, reading order. The last lines are the targets of issue 28, PASS or MISS.

    .venv/bin/python bench/reading.py [--languages ja,zh,...] [--pairs best|all] [--results FILE] [--tiny]

`--pairs best` (default) prints the per-image rows of each language's best pair, `all` every pair's; both
measure every pair, and the per-language table has them all. `--tiny` (the test suite's run): one image,
one pair (the config's default models).
"""

import argparse
import base64
import datetime
import hashlib
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ["HF_HUB_OFFLINE"] = "1"  # never the Hugging Face hub: its models are not what is measured here

import httpx  # noqa: E402

from bench import original_server  # noqa: E402
from bench.common import ROOT, free_port, machine, own_ray  # noqa: E402
from bench.reading import dataset  # noqa: E402
from bench.reading.scoring import PageScore, ReadBlock, Summary, score_page  # noqa: E402

TSL = "original"
TARGET_CER, TARGET_RECALL = 0.10, 0.85
TINY_IMAGE = "en-tesseract-phototest"
SERVER_CHOICE = "server's choice"
LOAD_RETRIES = 30


@dataclass
class Reading:
    """One image read with one pipeline: its score, the seconds the call took, an error if it failed."""

    page: dataset.Page
    pipeline: str
    score: PageScore
    seconds: float
    error: str | None = None


def encoded(path: Path) -> tuple[str, str]:
    contents = base64.b64encode(path.read_bytes()).decode()
    return contents, hashlib.md5(contents.encode()).hexdigest()


def nothing_read(page: dataset.Page, pipeline: str, why: str) -> Reading:
    return Reading(page, pipeline, score_page(page.blocks, [], page.language, page.order_scored), 0.0, why)


def read(client: httpx.Client, page: dataset.Page, pipeline: str, profile: str = "") -> Reading:
    contents, md5 = encoded(page.file)
    started = time.perf_counter()
    response = post(client, f"{profile}/run_ocrtsl/", {"contents": contents, "md5": md5})
    seconds = time.perf_counter() - started
    if response.status_code != 200:
        return Reading(page, pipeline, score_page(page.blocks, [], page.language, page.order_scored), seconds,
                       f"{response.status_code}: {response.text[:200]}")
    blocks = [ReadBlock(block["ocr"], tuple(block["box"])) for block in response.json()["result"]]
    return Reading(page, pipeline, score_page(page.blocks, blocks, page.language, page.order_scored), seconds)


def post(client: httpx.Client, path: str, body: dict) -> httpx.Response:
    """POST, waiting out the server's model-load rate limit (429 with Retry-After): measuring every pair
    loads models faster than a replica's `max_loads_per_minute` allows."""
    for _ in range(LOAD_RETRIES):
        response = client.post(path, json=body)
        if response.status_code != 429:
            return response
        time.sleep(float(response.headers.get("Retry-After", 5)))
    return response


def ok(response: httpx.Response) -> dict:
    if response.status_code not in (200, 202):
        raise RuntimeError(f"{response.request.url.path} answered {response.status_code}: {response.text[:300]}")
    return response.json()


class Ours:
    """Our app on a local Ray cluster, over HTTP."""

    def __init__(self, config: Path, data_dir: Path):
        import ray
        from ray import serve

        import graph
        from core.settings import AppArgs

        self.defaults = AppArgs.model_validate(graph.read_config(config)[0]).default_selection
        port = free_port()
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level="ERROR", log_to_driver=False)
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(graph.app_from_config(config, data_dir=str(data_dir)), name="ocr_translate", route_prefix="/")
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600)

    def close(self) -> None:
        import ray
        from ray import serve

        self.client.close()
        serve.shutdown()
        ray.shutdown()

    def offered(self, lang: str) -> tuple[list[str], list[str]]:
        """The box and OCR models the handshake offers for `lang` (after set_lang to it)."""
        ok(post(self.client, "/set_lang/", {"lang_src": lang, "lang_dst": lang}))
        shake = ok(self.client.get("/"))
        return shake["BOXModels"], shake["OCRModels"]

    def select(self, box: str, ocr: str) -> None:
        ok(post(self.client, "/set_models/", {"box_model_id": box, "ocr_model_id": ocr, "tsl_model_id": TSL}))

    def server_choice(self, lang: str) -> tuple[str, str, str]:
        """A new reader profile (the config's default selection, no model chosen for any language), then
        set_lang to `lang` and only the pass-through translator chosen: the box and OCR models the server
        selects ('' for none), and the profile's path. A new profile, because `set_lang` gives back the
        models a reader once chose for a language, and measuring the pairs chose every one of them."""
        path = ok(self.client.post("/profiles/", json={"name": f"bench-{lang}-{uuid.uuid4().hex[:8]}"}))["path"]
        ok(post(self.client, f"{path}/set_lang/", {"lang_src": lang, "lang_dst": lang}))
        shake = ok(self.client.get(f"{path}/"))
        if shake["box_selected"] and shake["ocr_selected"]:
            ok(post(self.client, f"{path}/set_models/", {"tsl_model_id": TSL}))
        return shake["box_selected"], shake["ocr_selected"], path


def measure_pairs(ours: Ours, pages: list[dataset.Page], languages: list[str], tiny: bool,
                  say: Callable[[str], None]) -> dict[str, dict[str, list[Reading]]]:
    """Per language, per pair 'box + ocr', the readings of the language's images."""
    results: dict[str, dict[str, list[Reading]]] = {}
    for lang in languages:
        own = [page for page in pages if page.language == lang]
        boxes, ocrs = ours.offered(lang)
        pairs = [(box, ocr) for box in boxes for ocr in ocrs]
        if tiny:
            pairs = [(ours.defaults.box_model, ours.defaults.ocr_model)]
        say(f"{lang}: {len(own)} images x {len(pairs)} pairs (box {boxes}, OCR {ocrs})")
        results[lang] = {}
        for box, ocr in pairs:
            name = f"{box} + {ocr}"
            try:
                ours.select(box, ocr)
            except RuntimeError as exc:
                results[lang][name] = [nothing_read(page, name, str(exc)) for page in own]
                say(f"  {name}: could not be selected: {exc}")
                continue
            results[lang][name] = [read(ours.client, page, name) for page in own]
            summary = Summary.of([r.score for r in results[lang][name]])
            say(f"  {name}: CER {summary.cer:.3f} recall {summary.recall:.2f} precision {summary.precision:.2f} "
                f"({sum(r.seconds for r in results[lang][name]):.1f} s)")
    return results


def measure_server_choice(ours: Ours, pages: list[dataset.Page], languages: list[str],
                          say: Callable[[str], None]) -> dict[str, tuple[str, list[Reading]]]:
    results = {}
    for lang in languages:
        own = [page for page in pages if page.language == lang]
        box, ocr, path = ours.server_choice(lang)
        if not (box and ocr):
            chosen = f"nothing (box {box or 'none'}, OCR {ocr or 'none'})"
            results[lang] = (chosen, [nothing_read(page, chosen, "the server selects no model to read it")
                                      for page in own])
        else:
            chosen = f"{box} + {ocr}"
            results[lang] = (chosen, [read(ours.client, page, chosen, path) for page in own])
        say(f"{lang}: the server keeps {chosen}")
    return results


def measure_original(pages: list[dataset.Page], languages: list[str], folder: Path,
                     say: Callable[[str], None]) -> tuple[dict[str, list[Reading]], str]:
    """The original's default pipeline (EasyOCR boxes and its bench plugin's English recognizer) on the
    images of the languages it reads offline; ({}, why) where it is not measured."""
    if not original_server.VENV.exists():
        return {}, (f"skipped: the original's virtualenv {original_server.VENV.relative_to(ROOT)} is absent "
                    "(`make bench` builds it; bench/original_server.py)")
    readable = [lang for lang in languages if lang == original_server.LANG_SRC]
    if not readable:
        return {}, f"skipped: offline it reads only {original_server.LANG_SRC!r}, not among --languages"
    original_server.ensure_venv()
    results = {}
    with original_server.start(free_port(), folder) as server:
        original_server.prepare(server.url, original_server.TSL_PASSTHROUGH)
        name = f"original: {original_server.BOX_MODEL} + {original_server.OCR_MODEL}"
        with httpx.Client(base_url=server.url, timeout=600) as client:
            for lang in readable:
                results[lang] = [read(client, page, name) for page in pages if page.language == lang]
                say(f"{lang}: the original read {len(results[lang])} images")
    return results, f"measured on {', '.join(readable)} (what it reads offline)"


# -- tables ----------------------------------------------------------------------------------------------
def fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None or value != value else f"{value:.{digits}f}"


def image_row(r: Reading) -> str:
    s = r.score
    note = f" ({r.error[:60]})" if r.error else ""
    return (f"| {r.page.name} | {r.page.language} | {r.page.kind} | {r.pipeline}{note} | {fmt(s.cer)} | "
            f"{s.recalled}/{s.truth_blocks} | {s.precise}/{s.predicted} | {s.merges} | {s.splits} | "
            f"{fmt(s.order, 2)} | {r.seconds:.1f} |")


IMAGE_HEADER = ("| image | lang | kind | pipeline | CER | recalled | precise | merges | splits | order | s |\n"
                "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
SUMMARY_HEADER = ("| lang | pipeline | images | CER | recall | precision | merges | splits | order |\n"
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- |")


def summary_row(lang: str, pipeline: str, readings: list[Reading]) -> str:
    s = Summary.of([r.score for r in readings])
    return (f"| {lang} | {pipeline} | {s.pages} | {fmt(s.cer)} | {fmt(s.recall, 2)} | {fmt(s.precision, 2)} | "
            f"{s.merges} | {s.splits} | {fmt(s.order, 2)} |")


def best_pair(pairs: dict[str, list[Reading]]) -> str:
    def key(name: str) -> tuple[float, float]:
        s = Summary.of([r.score for r in pairs[name]])
        return (s.cer, -s.recall)

    return min(pairs, key=key)


def report(pairs, choice, original, original_note: str, show_all: bool) -> list[str]:
    lines = []
    best = {lang: best_pair(by_pair) for lang, by_pair in pairs.items() if by_pair}
    lines += ["### (a) Each language's best pair, per image", "", IMAGE_HEADER]
    for lang, by_pair in pairs.items():
        for name, readings in by_pair.items():
            if show_all or name == best.get(lang):
                lines += [image_row(r) for r in readings]
    lines += ["", "### (b) The server's own choice after `set_lang`, per image", "", IMAGE_HEADER]
    lines += [image_row(r) for _, readings in choice.values() for r in readings]
    if original:
        lines += ["", "### (c) The original's default pipeline, per image", "", IMAGE_HEADER]
        lines += [image_row(r) for readings in original.values() for r in readings]
    lines += ["", "### Per language", "", SUMMARY_HEADER]
    for lang, by_pair in pairs.items():
        for name, readings in by_pair.items():
            lines.append(summary_row(lang, ("**best** " if name == best.get(lang) else "") + name, readings))
        if lang in choice:
            lines.append(summary_row(lang, f"{SERVER_CHOICE}: {choice[lang][0]}", choice[lang][1]))
        if lang in original:
            lines.append(summary_row(lang, original[lang][0].pipeline, original[lang]))
    lines += ["", "### Overall", "", SUMMARY_HEADER]
    best_readings = [r for lang, name in best.items() for r in pairs[lang][name]]
    choice_readings = [r for _, readings in choice.values() for r in readings]
    for label, subset in (("all", lambda r: True), ("real", lambda r: r.page.real),
                          ("rendered", lambda r: not r.page.real), ("non-English", lambda r: r.page.language != "en")):
        lines.append(summary_row(label, "best pair per language", [r for r in best_readings if subset(r)]))
        lines.append(summary_row(label, SERVER_CHOICE, [r for r in choice_readings if subset(r)]))
    lines += ["", f"The original: {original_note}."]
    return lines


def targets(choice, original, original_note: str) -> list[str]:
    non_english = Summary.of([r.score for lang, (_, readings) in choice.items() if lang != "en" for r in readings])

    def verdict(passed: bool) -> str:
        return "PASS" if passed else "MISS"

    lines = [
        f"target: server's own choice after set_lang, mean CER <= {TARGET_CER:.2f} over the non-English images: "
        f"{fmt(non_english.cer)} over {non_english.pages} images {verdict(non_english.cer <= TARGET_CER)}",
        f"target: server's own choice after set_lang, block recall >= {TARGET_RECALL:.2f} over the non-English "
        f"images: {fmt(non_english.recall, 2)} {verdict(non_english.recall >= TARGET_RECALL)}",
    ]
    if not original:
        lines.append(f"target: not worse than the original's pipeline on any language it reads: NOT MEASURED "
                     f"({original_note})")
    else:
        worse = []
        for lang, readings in original.items():
            theirs = Summary.of([r.score for r in readings])
            ours = Summary.of([r.score for r in choice.get(lang, ("", []))[1]])
            if ours.cer > theirs.cer or ours.recall < theirs.recall:
                worse.append(f"{lang} (CER {fmt(ours.cer)} vs {fmt(theirs.cer)}, recall {fmt(ours.recall, 2)} vs "
                             f"{fmt(theirs.recall, 2)})")
        lines.append("target: not worse than the original's pipeline on any language it reads: "
                     + (f"MISS on {'; '.join(worse)}" if worse else f"PASS ({', '.join(original)})"))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "local.yaml")
    parser.add_argument("--languages", default=",".join(dataset.LANGUAGES),
                        help="comma-separated server codes (zh simplified, zht traditional Chinese)")
    parser.add_argument("--pairs", choices=("best", "all"), default="best",
                        help="per-image rows of each language's best pair, or of every pair (all are measured)")
    parser.add_argument("--results", type=Path, help="also write the tables and targets to this Markdown file")
    parser.add_argument("--tiny", action="store_true", help="one image, one pair (the test suite's run)")
    options = parser.parse_args()
    languages = [code.strip() for code in options.languages.split(",") if code.strip()]
    unknown = set(languages) - set(dataset.LANGUAGES)
    if unknown:
        parser.error(f"unknown languages {sorted(unknown)}: the set has {', '.join(dataset.LANGUAGES)}")
    pages = [page for page in dataset.load() if page.language in languages]
    if options.tiny:
        pages = [page for page in pages if page.name == TINY_IMAGE] or pages[:1]
        languages = [pages[0].language]

    def say(text: str) -> None:
        print(text, flush=True)

    real = sum(page.real for page in pages)
    say(f"reading benchmark: {len(pages)} images ({real} real, {len(pages) - real} rendered) in "
        f"{', '.join(languages)}; pairs {options.pairs}{'; tiny' if options.tiny else ''}")
    own_ray()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ocr-reading-") as folder:
        ours = Ours(options.config.resolve(), Path(folder) / "ours")
        try:
            say("pairs:")
            pairs = measure_pairs(ours, pages, languages, options.tiny, say)
            say("the server's own choice:")
            choice = measure_server_choice(ours, pages, languages, say)
        finally:
            ours.close()
        if options.tiny and not original_server.VENV.exists():
            original, original_note = {}, (f"skipped: the original's virtualenv "
                                           f"{original_server.VENV.relative_to(ROOT)} is absent")
        else:
            original, original_note = measure_original(pages, languages, Path(folder) / "original", say)
    say(f"the original: {original_note}")
    elapsed = time.perf_counter() - started
    command = "bench/reading.py" + (" --tiny" if options.tiny else f" --languages {','.join(languages)} "
                                    f"--pairs {options.pairs}")
    header = (f"Run on {datetime.date.today()} in {elapsed / 60:.1f} min: `.venv/bin/python {command}`, "
              f"config `{options.config.name}`, on {machine()}.")
    tables = report(pairs, choice, original, original_note, options.pairs == "all")
    verdicts = targets(choice, original, original_note)
    say("")
    say("\n".join([header, "", *tables, "", *verdicts]))
    if options.results:
        intro = ("# Reading quality (`bench/reading.py`)\n\nPage CER (capped at 1), block recall and precision, "
                 "merges (one predicted block over several truth blocks), splits (one truth block read as "
                 "several), reading order (share of recalled pairs in order): bench/reading/scoring.py. "
                 "Recalled and precise are block counts; per language and overall, CER and order are means "
                 "over images, recall and precision over blocks.\n\n")
        options.results.write_text(f"{intro}{header}\n\n" + "\n".join(tables) + "\n\n```\n" + "\n".join(verdicts)
                                   + "\n```\n")
        say(f"wrote {options.results}")


if __name__ == "__main__":
    main()
