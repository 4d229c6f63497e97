"""Every script under bench/ runs end to end at its tiny size (`--tiny`: one image, one round, few
callers), so that a change that breaks a benchmark fails here: the measured ones all at once through
bench/all_benches.py, as `make bench` runs them, three at a time; bench/extension_session.py against a
second app of the session's cluster; bench/original_server.py and baseline.py's original side only
where the original's virtualenv (bench/.original-venv) is, saying so where it is not. The multi-node
one, bench/node_loss.py, runs on the multi-node tests' own cluster (tests/cluster/test_multinode.py).

No figure is compared with another (a tiny run's figures mean nothing): each script must go through
and print, and write, what it should."""

import csv
import importlib.util
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.images import TWO_PARAGRAPHS, render
from tests.support.live import API_TOKEN, second_app
from tests.support.paths import ROOT

ORIGINAL_VENV = ROOT / "bench" / ".original-venv"
TINY_RUN = ("baseline", "batching", "translation_engines", "bulk", "ingress_proxy", "autoscale", "readers")
"""The benchmarks all_benches.py runs here: all but node_loss, which needs the multi-node cluster."""
RATIO = r"(\d+\.\d+)x"


@dataclass
class TinyRun:
    out: Path
    """all_benches.py's --out: RESULTS.md and the pictures."""
    status: dict[str, dict]
    printed: str

    def output(self, name: str) -> str:
        """What the benchmark printed, once it is known to have gone through."""
        logs = self.out / "logs"
        status = self.status[name]
        assert status["returncode"] == 0, (
            f"bench/{name}.py --tiny {'timed out' if status['timed_out'] else 'failed'} "
            f"(exit {status['returncode']}, {status['seconds']:g} s):\n"
            + (logs / f"{name}.out").read_text()[-3000:] + "\n" + (logs / f"{name}.err").read_text()[-6000:])
        return (logs / f"{name}.out").read_text()


def lines_matching(text: str, pattern: str) -> list[re.Match]:
    return [match for line in text.splitlines() if (match := re.search(pattern, line))]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> TinyRun:
    missing = [name for name in ("matplotlib", "psutil") if importlib.util.find_spec(name) is None]
    if missing:
        pytest.fail(f"the bench scripts need {', '.join(missing)}: pip install -e '.[bench]' (`make bench` "
                    "installs it)", pytrace=False)
    out = tmp_path_factory.mktemp("bench")
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "all_benches.py"), "--tiny", "--jobs", "3", "--timeout-s", "600",
         "--out", str(out), "--logs", str(out / "logs"), *TINY_RUN],
        cwd=ROOT, capture_output=True, text=True, timeout=1800,
        env={key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"})  # never the session's Ray
    status = json.loads((out / "logs" / "status.json").read_text())
    assert set(status) == set(TINY_RUN), done.stdout + done.stderr
    return TinyRun(out, status, done.stdout)


def test_all_benches_writes_results_md_with_a_section_per_benchmark(tiny):
    results = (tiny.out / "RESULTS.md").read_text()
    assert results.startswith("<!-- bench:head -->\n# Benchmarks\n")
    assert "**A tiny run**" in results
    for name in TINY_RUN:
        tiny.output(name)  # each went through
        assert f"<!-- bench:{name} -->\n## " in results and f"<!-- /bench:{name} -->" in results, name
        assert f"(`bench/{name}.py`)" in results, name
    assert results.index("<!-- bench:baseline -->") < results.index("<!-- bench:batching -->") < results.index(
        "<!-- bench:autoscale -->")  # in make bench's order
    for picture in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", results):
        assert (tiny.out / picture).read_bytes().startswith(b"\x89PNG"), picture
    assert "(raylet)" not in results  # Ray's own lines are left out of the sections
    assert f"wrote {tiny.out / 'RESULTS.md'}" in tiny.printed


def test_baseline_measures_every_side_and_writes_its_tables(tiny):
    printed = tiny.output("baseline")
    assert "direct: 1 images one at a time" in printed
    for server in ("ours", "ours/torch", "ours/onnx"):
        [line] = lines_matching(printed, rf"^{re.escape(server)} +c=1: +(\d+\.\d+) images/s .* cer (\d\.\d+)$")
        assert float(line[1]) > 0 and float(line[2]) < 0.2, line[0]  # it read the rendered text
    assert re.search(rf"^overhead: {RATIO}$", printed, re.MULTILINE)
    assert re.search(rf"^onnx craft vs torch: {RATIO}$", printed, re.MULTILINE)
    section = (tiny.out / "RESULTS.md").read_text().split("<!-- bench:baseline -->")[1].split("<!-- /bench")[0]
    for row in ("direct (in process, no HTTP/Serve) | 1 |", "ours (Ray Serve, HTTP) | 1 |",
                "ours, EasyOCR on torch | 1 |", "ours, EasyOCR on onnx | 1 |", "| ours | "):
        assert row in section, row
    assert (tiny.out / "results.png").read_bytes().startswith(b"\x89PNG")
    if ORIGINAL_VENV.exists():
        assert lines_matching(printed, r"^original +c=1: ") and "original (django-ocr-translate) | 1 |" in section
        assert re.search(rf"^vs original c=1: {RATIO}$", printed, re.MULTILINE)
    else:  # skipped, saying so, and no ratio pretends to compare with it
        assert "original: skipped, its virtualenv bench/.original-venv is absent" in printed
        assert "was not measured in this run" in section and "vs original" not in printed


def test_batching_serves_a_model_on_the_configs_engine_with_batching_on_and_off(tiny):
    printed = tiny.output("batching")
    [on] = lines_matching(printed, r"batching on: 4 requests in .* (\d+) forward passes$")
    [off] = lines_matching(printed, r"batching off: 4 requests in .* (\d+) forward passes$")
    assert 1 <= int(on[1]) <= 4 and int(off[1]) == 4  # off: one text a pass
    assert "loaded as ctranslate2" in printed  # configs/local.yaml's engine for Hugging Face translation
    assert re.search(rf"^batching speedup: {RATIO}$", printed, re.MULTILINE)


def test_translation_engines_runs_both_engines(tiny):
    printed = tiny.output("translation_engines")
    for engine in ("transformers", "ctranslate2"):
        [row] = lines_matching(printed, rf"^{engine} +{engine} \S+ on cpu +2 +\d+\.\d+ +\d+\.\d+ +(\d+) +(\d+\.\d+)$")
        assert int(row[1]) >= 1 and float(row[2]) > 0, row[0]  # forward passes, characters out
    assert re.search(r"^ctranslate2 vs transformers: \d+\.\dx$", printed, re.MULTILINE)


def test_bulk_runs_the_server_and_two_bulk_runs(tiny):
    printed = tiny.output("bulk")
    assert lines_matching(printed, r"^server c=1: \d+\.\d+ images/s \(warm\)$")
    for images in (1, 2):
        assert lines_matching(printed, rf"^bulk, {images} images: \d+\.\d s in all")
    assert lines_matching(printed, r"^bulk vs server: (\d+\.\dx|not measured)$")


def test_ingress_proxy_runs_both_proxies(tiny):
    printed = tiny.output("ingress_proxy")
    for mode in ("serve", "haproxy"):
        assert lines_matching(printed, rf"^{mode} +md5 "), mode
        assert lines_matching(printed, rf"^  {mode} +\{{\"socket\""), mode  # the client address it saw
    assert "answers that differ between the modes" in printed
    assert re.search(rf"^haproxy vs serve proxy, md5-only p50: {RATIO}$", printed, re.MULTILINE)


def test_autoscale_records_the_replicas_every_second(tiny):
    printed = tiny.output("autoscale")
    assert re.search(r"^Translator: 1 replica\(s\) at start, ", printed, re.MULTILINE)
    with (tiny.out / "autoscale.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert rows and {"t_s", "load", "answered", "Translator_replicas", "Ingress_replicas"} <= set(rows[0])
    assert {row["load"] for row in rows} == {"0", "1"}  # under load, then after it
    assert int(rows[-1]["answered"]) > 0
    assert (tiny.out / "autoscale.png").read_bytes().startswith(b"\x89PNG")


def test_readers_reads_a_chapter_alone_then_with_readers_of_two_pairs(tiny):
    printed = tiny.output("readers")
    [alone] = lines_matching(printed, r"^one reader: 2 pages in \d+\.\d s, model work (\d+) ")
    [shared] = lines_matching(printed, r"^2 readers on 2 pairs: .* model work (\d+)$")
    assert int(alone[1]) > 2 and int(alone[1]) < int(shared[1]) < 2 * int(alone[1])  # boxes and OCR shared
    assert re.search(rf"^readers share: 2 readers cost {RATIO} one reader in wall time, {RATIO} in model work",
                     printed, re.MULTILINE)


def test_extension_session_drives_a_running_server(live, tmp_path):
    image = tmp_path / "page.png"
    render(TWO_PARAGRAPHS).save(image)
    with second_app(live, "bench_session", "/bench-session", tmp_path / "data") as url:
        done = subprocess.run(
            [sys.executable, str(ROOT / "bench" / "extension_session.py"), str(image), "--server", url,
             "--token", API_TOKEN, "--box", "rapidocr/ppocr-v4-det", "--ocr", "rapidocr/ppocr-v4-rec",
             "--tsl", "apertium/eng-spa", "--repeat", "2"],
            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "first lazy call: 406" in done.stdout  # the md5-only call before the image was read
    assert "work call: 2 blocks in" in done.stdout
    assert "ocr: 'The quick brown fox jumps\\nover the lazy dog today.'" in done.stdout
    assert re.search(r"^lazy md5-only call: median \d+\.\d ms over 2; .* ratio \d+\.\d\d$", done.stdout, re.MULTILINE)


@pytest.mark.skipif(not ORIGINAL_VENV.exists(), reason="the original server's virtualenv, bench/.original-venv, is "
                    "absent (`make bench` builds it)")
def test_original_server_answers_the_extensions_calls(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "original_server.py"), "--tsl", "passthrough"],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "lazy call (md5 only): 406" in done.stdout and "work call: 200" in done.stdout
    assert "lazy call again: 200" in done.stdout
