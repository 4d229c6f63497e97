"""Eight readers on one server (reader profiles, docs/profiles.md): what they cost against one.

The app of configs/local.yaml on a local Ray cluster, one replica per model deployment. One reader (a
profile, English to Spanish) reads a chapter of 20 rendered pages as the extension does (the md5-only
call, 406, then the image); then eight profiles, four reading English to Spanish and four English to
Catalan (Apertium both), read another chapter of the same make all at once, each page by page. The
models' work is counted on the replicas (detection runs, text lines read, texts translated), the wall
time from the first call to the last answer. Eight servers of their own would cost eight times one
reader; the profiles share the boxes, the OCR and each pair's translations (the target: at most 1.5x).

    .venv/bin/python bench/readers.py [--pages 20] [--readers 8] [--tiny]
"""

import argparse
import concurrent.futures
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import own_ray  # noqa: E402

PAIRS = (("es", "apertium/eng-spa"), ("ca", "apertium/eng-cat"))
"""The readers' pairs, taken in turn: English into Spanish and into Catalan."""
MODELS = {"box_model_id": "rapidocr/ppocr-v4-det", "ocr_model_id": "rapidocr/ppocr-v4-rec"}
"""configs/local.yaml's default detection and OCR: the fastest offline ones."""
PROSE = ("the old captain looked at the harbour where ships waited for the morning tide while children ran "
         "along the wall and a dog barked at the gulls above the market full of fish bread apples and voices")
"""The words of the pages' made-up sentences."""
COUNTED = {"BoxDetector": "calls", "OCRReader": "items", "Translator": "items"}
"""The model work of each deployment: detection runs, text lines read, texts translated."""


def chapter(seed: int, pages: int) -> list[tuple[str, str]]:
    """`pages` comic-like pages of three speech blocks of made-up sentences, as the extension sends them
    (base64, md5); another seed gives another chapter of the same make."""
    from tests.support.images import encode, render

    rng = random.Random(seed)

    def sentence() -> str:
        return " ".join(rng.choice(PROSE.split()) for _ in range(rng.randint(5, 8))).capitalize() + "."

    return [encode(render([((40, 30 + 130 * block), f"{sentence()}\n{sentence()}") for block in range(3)],
                          size=(900, 420), font_size=26)) for _ in range(pages)]


def model_work() -> int:
    """The replicas' counters, summed: what the models have done so far."""
    from ray import serve

    return sum(sum(serve.get_deployment_handle(name, app_name="ocr_translate").stats.remote().result()[counter]
                   .values()) for name, counter in COUNTED.items())


def new_reader(url: str, pair: tuple[str, str], name: str) -> str:
    """A profile reading English into the pair's language with its models; its address path."""
    import httpx

    with httpx.Client(base_url=url, timeout=600) as operator:  # from this machine: no token needed
        path = operator.post("/profiles/", json={"name": name}).raise_for_status().json()["path"]
    with httpx.Client(base_url=url + path, timeout=600) as reader:
        reader.post("/set_lang/", json={"lang_src": "en", "lang_dst": pair[0]}).raise_for_status()
        reader.post("/set_models/", json={**MODELS, "tsl_model_id": pair[1]}).raise_for_status()
    return path


def read_chapter(url: str, pages: list[tuple[str, str]]) -> None:
    """Page by page, as the extension: the md5-only call, then the image when nothing is stored."""
    import httpx

    with httpx.Client(base_url=url, timeout=600) as reader:
        for contents, md5 in pages:
            lazy = reader.post("/run_ocrtsl/", json={"md5": md5})
            if lazy.status_code == 406:
                lazy = reader.post("/run_ocrtsl/", json={"md5": md5, "contents": contents})
            if lazy.status_code != 200:
                raise RuntimeError(f"run_ocrtsl answered {lazy.status_code}: {lazy.text}")


def measured(url: str, paths: list[str], pages: list[tuple[str, str]]) -> tuple[float, int]:
    """Every reader reads the chapter at once: the seconds until the last is done, and the model work."""
    work = model_work()
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(len(paths)) as pool:
        list(pool.map(lambda path: read_chapter(url + path, pages), paths))
    return time.perf_counter() - started, model_work() - work


def deploy(port: int, data: Path) -> str:
    """configs/local.yaml's app with its own store, one replica per deployment (counters in one place)."""
    from ray import serve

    import graph

    one = {name: {"autoscaling_config": None, "num_replicas": 1} for name in COUNTED}
    serve.run(graph.app_from_config(graph.LOCAL_CONFIG, one, data_dir=str(data), preload_selected_models=False),
              name="ocr_translate", route_prefix="/")
    return f"http://127.0.0.1:{port}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=20, help="pages of each chapter")
    parser.add_argument("--readers", type=int, default=8, help="readers of the shared chapter, pairs in turn")
    parser.add_argument("--tiny", action="store_true", help="the test suite's run: 2 pages, 2 readers")
    parser.add_argument("--out", type=Path, help="unused: this benchmark writes no file")
    options = parser.parse_args()
    if options.tiny:
        options.pages, options.readers = 2, 2
    own_ray()
    from bench.local_app import local_cluster

    alone_pages, shared_pages = chapter(1, options.pages), chapter(2, options.pages)
    with tempfile.TemporaryDirectory(prefix="bench-readers-") as work, local_cluster() as port:
        url = deploy(port, Path(work))
        alone = [new_reader(url, PAIRS[0], "alone")]
        readers = [new_reader(url, PAIRS[turn % len(PAIRS)], f"reader-{turn}") for turn in range(options.readers)]
        for warming in readers[:len(PAIRS)]:  # each pair's models loaded before anything is timed
            read_chapter(url + warming, chapter(0, 1))
        one_s, one_work = measured(url, alone, alone_pages)
        all_s, all_work = measured(url, readers, shared_pages)
    print(f"one reader: {options.pages} pages in {one_s:.1f} s, model work {one_work} "
          "(detection runs + lines read + texts translated)")
    print(f"{options.readers} readers on {min(options.readers, len(PAIRS))} pairs: the same make of chapter, at "
          f"once, in {all_s:.1f} s, model work {all_work}")
    print(f"readers share: {options.readers} readers cost {all_s / one_s:.1f}x one reader in wall time, "
          f"{all_work / one_work:.1f}x in model work (servers of their own: {options.readers}x)")


if __name__ == "__main__":
    main()
