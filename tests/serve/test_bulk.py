"""`ocr-translate-bulk` (bulk/) on a real local Ray: pages to Parquet with the answers the server gives
for the same images and models, a corrupt file as an error row, resumed runs, and the store a bulk
run fills answering the extension's md5-only calls with no model call."""

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from tests.support.images import write_pages
from tests.support.paths import ROOT

ENGLISH = {"lang_src": "en", "lang_dst": "es", "box_model_id": "rapidocr/ppocr-v4-det",
           "ocr_model_id": "rapidocr/ppocr-v4-rec", "tsl_model_id": "apertium/eng-spa"}
SPANISH = {"lang_src": "es", "lang_dst": "en", "box_model_id": "rapidocr/ppocr-v4-det",
           "ocr_model_id": "tesseract/spa", "tsl_model_id": "apertium/spa-eng"}



def config(tmp_path: Path, data_dir: Path) -> Path:
    """configs/local.yaml with its data folder moved (conversions, and the store `--store` writes to)."""
    content = yaml.safe_load((ROOT / "configs" / "local.yaml").read_text())
    content["applications"][0]["args"]["data_dir"] = str(data_dir)
    path = tmp_path / "bulk.yaml"
    path.write_text(yaml.safe_dump(content))
    return path


def bulk_command(job: dict, out: Path, cfg: Path, *inputs, extra=()) -> list[str]:
    return [sys.executable, "-m", "bulk", *map(str, inputs), "--src", job["lang_src"], "--dst", job["lang_dst"],
            "--box", job["box_model_id"], "--ocr", job["ocr_model_id"], "--tsl", job["tsl_model_id"],
            "--out", str(out), "--config", str(cfg), *extra]


def environment() -> dict[str, str]:
    """The command's own Ray cluster, with the tests' Ray token (conftest's RAY_AUTH_MODE and RAY_AUTH_TOKEN)."""
    return {**os.environ, "RAY_ADDRESS": ""}


def run_bulk(*args, **kwargs) -> dict:
    """The command's summary (its last line), after it succeeded."""
    done = subprocess.run(bulk_command(*args, **kwargs), cwd=ROOT, env=environment(), capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def rows(out: Path) -> dict[str, dict]:
    return {Path(row["path"]).name: row for row in pq.read_table(out).to_pylist()}


def blocks(answer: list[dict]) -> list[tuple]:
    return [(tuple(block["box"]), block["ocr"], block["tsl"]) for block in answer]


def model_calls(live) -> dict[str, int]:
    return {name: sum(live.stats(name)["calls"].values()) for name in ("BoxDetector", "OCRReader", "Translator")}


def test_pages_of_two_languages_give_the_servers_answers_and_a_second_run_skips_them(live, tmp_path):
    english, spanish = tmp_path / "english", tmp_path / "spanish"
    md5s = write_pages(english, "en", 0, 3) | write_pages(spanish, "es", 10, 2)
    (english / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n but not really")
    out, cfg = tmp_path / "results.parquet", config(tmp_path, tmp_path / "data")

    first = run_bulk(ENGLISH, out, cfg, english)
    assert (first["images"], first["failed"], first["skipped"]) == (4, 1, 0)
    second = run_bulk(SPANISH, out, cfg, spanish)
    assert (second["images"], second["failed"]) == (2, 0)

    found = rows(out)
    assert set(found) == {*md5s, "broken.png"}
    broken = found.pop("broken.png")
    assert broken["blocks"] == [] and "not a readable image" in broken["error"]
    for name, row in found.items():
        job = ENGLISH if "-en-" in name else SPANISH
        assert row["md5"] == md5s[name] and row["error"] is None
        assert (row["src"], row["box_model"], row["ocr_model"], row["tsl_model"]) == (
            job["lang_src"], job["box_model_id"], job["ocr_model_id"], job["tsl_model_id"])
        assert (row["width"], row["height"]) == (640, 330)
        contents = base64.b64encode((english if "-en-" in name else spanish).joinpath(name).read_bytes()).decode()
        answer = live.http.post("/run_ocrtsl/", json={"contents": contents, "md5": row["md5"], **job})
        assert answer.status_code == 200, answer.text
        assert blocks(answer.json()["result"]) == blocks(row["blocks"]), name
        assert len(row["blocks"]) == 2 and all(block["tsl"] for block in row["blocks"])

    again = run_bulk(ENGLISH, out, cfg, english, spanish)  # Spanish pages belong to another job: read as English
    assert again["skipped"] == 3 and again["images"] == 3  # the broken file is tried again, with the new pages
    assert len(pq.read_table(out)) == 8  # 6 rows + the Spanish pages as an English job; one row per image and job


def test_a_run_into_the_store_makes_the_extensions_md5_only_calls_hits(live, tmp_path):
    pages = write_pages(tmp_path / "chapter", "en", 40, 3)
    out = tmp_path / "chapter.parquet"
    summary = run_bulk(ENGLISH, out, config(tmp_path, Path(live.data_dir)), tmp_path / "chapter", extra=("--store",))
    assert summary["images"] == 3
    found = rows(out)
    before = model_calls(live)
    for name, md5 in pages.items():
        answer = live.http.post("/run_ocrtsl/", json={"md5": md5, **ENGLISH})
        assert answer.status_code == 200, answer.text
        assert blocks(answer.json()["result"]) == blocks(found[name]["blocks"])
    assert model_calls(live) == before  # answered from the store alone

    # The store now holds them: a run with a fresh output file skips them too.
    again = run_bulk(ENGLISH, tmp_path / "other.parquet", config(tmp_path, Path(live.data_dir)),
                     tmp_path / "chapter", extra=("--store",))
    assert (again["images"], again["skipped"]) == (0, 3)


def test_a_killed_run_started_again_finishes_the_rest(tmp_path):
    """What a killed run leaves is whole parts beside the output and no merged file (parts are written
    to a temporary name, then renamed): built here from a finished run of the first pages, so the
    state does not depend on when a kill would land. The same command then finishes the rest."""
    pages = write_pages(tmp_path / "book", "en", 60, 12)
    first = tmp_path / "first"
    first.mkdir()
    for name in list(pages)[:5]:
        (first / name).write_bytes((tmp_path / "book" / name).read_bytes())
    out, cfg = tmp_path / "book.parquet", config(tmp_path, tmp_path / "data")
    run_bulk(ENGLISH, tmp_path / "first.parquet", cfg, first)
    parts = out.with_name(out.name + ".parts")
    parts.mkdir()
    (tmp_path / "first.parquet").rename(parts / "left-by-a-killed-run.parquet")
    (parts / "cut-short.tmp").write_bytes(b"PAR1 half a part")  # a part the kill interrupted: not read

    summary = run_bulk(ENGLISH, out, cfg, tmp_path / "book")
    assert summary["skipped"] == 5 and summary["images"] == len(pages) - 5
    found = rows(out)
    assert set(found) == set(pages) and all(row["error"] is None for row in found.values())
    assert not parts.exists()


@pytest.mark.parametrize("argument", [["--box", "no/such-model"], ["--options", '{"rapidocr/ppocr-v4-det": 3}']])
def test_a_wrong_job_is_refused_before_ray_starts(tmp_path, argument):
    command = bulk_command(ENGLISH, tmp_path / "x.parquet", config(tmp_path, tmp_path / "data"), tmp_path) + argument
    done = subprocess.run(command, cwd=ROOT, env=environment(), capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "ocr-translate-bulk:" in done.stderr
    assert not (tmp_path / "x.parquet").exists()


def test_an_unknown_reader_profile_is_refused_before_ray_starts(tmp_path):
    """`--profile` reads the reader's settings from the server's store (the config's without --store)."""
    cfg = config(tmp_path, tmp_path / "data")
    command = [sys.executable, "-m", "bulk", str(tmp_path), "--profile", "nobody", "--out", str(tmp_path / "x.parquet"),
               "--config", str(cfg)]
    done = subprocess.run(command, cwd=ROOT, env=environment(), capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and not (tmp_path / "x.parquet").exists()
    assert f"ocr-translate-bulk: no reader profile is named 'nobody' in sqlite:///{tmp_path / 'data'}" in done.stderr


def test_a_run_for_a_reader_profile_takes_its_languages_models_and_glossary(tmp_path):
    """`--profile NAME`: the job as the command resolves it (in process, without Ray) is that reader's, not
    the config's default selection, and its glossary makes it another job, with other translation keys."""
    from bulk.cli import parse, resolve_job
    from core.settings import AppArgs, DefaultSelection
    from core.slots import chosen
    from models_registry import Registry
    from service.profiles import Profiles
    from service.store import Store

    store, registry = Store(f"sqlite:///{tmp_path}/server.sqlite3"), Registry.load()
    models = chosen(box="easyocr/craft", ocr="tesseract/eng", tsl="apertium/eng-spa")
    alice = Profiles(store).create("alice")[0].id
    store.update_selection("en", "es", models, profile=alice)
    store.set_glossary_term("en", "es", "Naruto", "Naruto-kun", alice)
    args = AppArgs(data_dir=tmp_path, default_selection=DefaultSelection(
        lang_src="es", lang_dst="en", box_model=SPANISH["box_model_id"], ocr_model=SPANISH["ocr_model_id"],
        tsl_model=SPANISH["tsl_model_id"]))
    out = ["--out", str(tmp_path / "x.parquet")]

    job, columns = resolve_job(parse(["pages", "--profile", "alice", *out]), args, store, registry)
    assert (job.src, job.dst, job.stages.map(lambda stage: stage.entry.id)) == ("en", "es", models)
    assert job.route.glossary.as_dict() == {"Naruto": "Naruto-kun"}
    named = ["--src", "en", "--dst", "es", "--box", models.box, "--ocr", models.ocr, "--tsl", models.tsl]
    plain, plain_columns = resolve_job(parse(["pages", *named, *out]), args, store, registry)
    assert plain.route.glossary.as_dict() == {} and plain.route.key.options != job.route.key.options
    assert plain_columns != columns
    assert resolve_job(parse(["pages", "--profile", "alice", "--dst", "ca", "--tsl", "apertium/eng-cat", *out]),
                       args, store, registry)[0].route.key.dst == "ca"  # what the command names wins
    with pytest.raises(SystemExit, match="no reader profile is named 'nobody'"):
        resolve_job(parse(["pages", "--profile", "nobody", *out]), args, store, registry)
    with pytest.raises(SystemExit):  # without a profile, the languages must be named
        parse(["pages", *out])


def test_a_table_of_paths_and_rendered_pages(tmp_path):
    """A CSV with a `path` column as input; `--render` draws each translation where its text was."""
    pages = write_pages(tmp_path / "scans", "en", 80, 2)
    table = tmp_path / "list.csv"
    table.write_text("path\n" + "".join(f"{tmp_path / 'scans' / name}\n" for name in pages))
    out, drawn = tmp_path / "list.parquet", tmp_path / "drawn"
    summary = run_bulk(ENGLISH, out, config(tmp_path, tmp_path / "data"), table, extra=("--render", str(drawn)))
    assert summary["images"] == 2 and set(summary["stage_images_per_s"]) == {"box", "ocr", "tsl"}
    from PIL import Image

    for name, row in rows(out).items():
        original = Image.open(tmp_path / "scans" / name).convert("L")
        rendered = Image.open(drawn / f"{row['md5']}.png").convert("L")
        assert rendered.size == original.size
        for block in row["blocks"]:
            left, top, right, bottom = block["box"]
            before, after = original.crop((left, top, right, bottom)), rendered.crop((left, top, right, bottom))
            assert before.tobytes() != after.tobytes()  # the translation replaced the text there
            assert min(after.getdata()) < 100  # dark text drawn inside the box
        outside = (0, 150, 640, 190)  # between the two blocks: untouched
        assert original.crop(outside).tobytes() == rendered.crop(outside).tobytes()


def test_the_translate_stage_follows_the_glossary_and_gives_a_language_model_each_page_on_its_own():
    """In process, without Ray: the stage's translations of two pages' texts, with the pair's glossary,
    around a model that copies unknown words (one call for both pages) and through a page translator
    (one call per page, the page's texts in reading order)."""
    from bulk.output import JobColumns, rows_of
    from bulk.stages import StageJob, TranslateStage, blocks_to_json
    from core.boxes import Block, Box
    from core.glossary import Glossary
    from core.options import TSL_OPTIONS, resolve
    from tests.support.services import CopiesUnknownWords

    class Pages(CopiesUnknownWords):
        translates_pages = True

        def translate_page(self, texts, src, dst, options, glossary):
            self.calls.append((list(texts), glossary.as_dict()))
            return [text.upper() for text in texts]

    terms = Glossary.of({"Naruto": "Naruto-kun"})
    job = StageJob("apertium/eng-spa", "en", "es", resolve(TSL_OPTIONS, {}), terms)
    one_line = [Block(Box(0, 0, 90, 20), [[Box(0, 0, 90, 20)]]), Block(Box(0, 40, 90, 60), [[Box(0, 40, 90, 60)]])]
    two_lines = [Block(Box(0, 0, 90, 60), [[Box(0, 0, 90, 20)], [Box(0, 40, 90, 60)]])]
    pages = [(one_line, ["hello Naruto", "the city"]), (two_lines, ["hello\nМосква"])]  # two systems: two blocks
    for backend, expected, calls in (
            (CopiesUnknownWords(), [["hola Naruto-kun", "la ciudad"], ["hola", "Москва"]], 1),
            (Pages(), [["HELLO NARUTO", "THE CITY"], ["HELLO", "МОСКВА"]], 2)):
        stage = TranslateStage.__new__(TranslateStage)
        stage.backend, stage.job = backend, job
        batch = {"blocks": np.array([blocks_to_json(blocks) for blocks, _ in pages], dtype=object),
                 "texts": np.array([json.dumps(texts) for _, texts in pages], dtype=object),
                 "translations": np.array([None, None], dtype=object), "error": np.array([None, None], dtype=object)}
        stage.run(batch, [0, 1])
        assert [json.loads(text) for text in batch["translations"]] == expected and len(backend.calls) == calls
    assert backend.calls[0] == (["hello Naruto", "the city"], {"Naruto": "Naruto-kun"})  # the page, its terms
    batch.update(md5=np.array(["a" * 32, "b" * 32], dtype=object), path=np.array(["1.png", "2.png"], dtype=object),
                 width=np.array([90, 90]), height=np.array([60, 60]))
    columns = JobColumns("en", "es", "easyocr/craft", "tesseract/eng", "apertium/eng-spa", "{}")
    [_, (row, result)] = rows_of(batch, columns)
    assert row["blocks"] == [{"box": [0, 0, 90, 20], "ocr": "hello", "tsl": "HELLO"},
                             {"box": [0, 40, 90, 60], "ocr": "Москва", "tsl": "МОСКВА"}]
    assert result.blocks == two_lines and result.texts == ["hello\nМосква"]  # what the store keeps: the detector's


def test_each_model_stage_is_placed_like_the_configs_deployment_of_its_kind():
    """configs/cluster.yaml's placement reaches the bulk stages: CPUs, pool bounds, and the custom
    resource naming the software a node must have (the cluster run: tests/cluster/test_multinode.py)."""
    import graph
    from bulk.cli import stage_options

    _, deployments = graph.read_config(ROOT / "configs" / "cluster.yaml")
    reader = stage_options(deployments, "OCRReader")
    assert (reader["num_cpus"], reader["resources"], reader["memory"]) == (1, {"tesseract": 0.01}, 2147483648)
    assert (reader["compute"].min_size, reader["compute"].max_size) == (2, 8)
    assert stage_options(deployments, "Translator")["resources"] == {"apertium": 0.01}
    assert "resources" not in stage_options(deployments, "BoxDetector")  # any node
