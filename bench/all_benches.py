"""`make bench`: every benchmark at its real size, one after the other so that none shares the CPU with
another, then bench/RESULTS.md: a section per benchmark with what it printed (bench/baseline.py writes
its own, with tables), the day it ran and how long it took, and its pictures.

    .venv/bin/python bench/all_benches.py [NAME ...] [--tiny] [--jobs N] [--out DIR]

NAMEs (default: all of them, in this order: baseline batching translation_engines bulk ingress_proxy
autoscale node_loss readers) run those only; the other sections of RESULTS.md stay as they were. `--tiny` runs
each at the smallest size that still goes through all of it, as the test suite does (tests/bench/): its
figures mean nothing. `--jobs N` runs N at once, for tiny runs only (measured runs never share the CPU).
Each benchmark's output and log go to `--logs` (a new temporary folder by default); the exit status is
1 when any failed, after the others ran.
"""

import argparse
import concurrent.futures
import contextlib
import datetime
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import BENCH, ROOT, machine, sections, write_section  # noqa: E402


@dataclass(frozen=True)
class Bench:
    script: str
    title: str
    own_section: bool = False
    """It writes its section of RESULTS.md itself (tables); else its output goes there as it printed it."""
    last_lines: int | None = None
    """How many of its last output lines the section keeps (None: all)."""
    pictures: tuple[str, ...] = ()


BENCHES = {
    "baseline": Bench("baseline.py", "Ours against the original", own_section=True),
    "batching": Bench("batching.py", "Batching on and off"),
    "translation_engines": Bench("translation_engines.py", "CTranslate2 against transformers"),
    "bulk": Bench("bulk.py", "Bulk runs on Ray Data against the server"),
    "ingress_proxy": Bench("ingress_proxy.py", "Serve's proxy against its HAProxy ingress"),
    "autoscale": Bench("autoscale.py", "Replicas under load and after it", last_lines=1,
                       pictures=("autoscale.png",)),
    "node_loss": Bench("node_loss.py", "A worker node lost under load", pictures=("node_loss.png",)),
    "readers": Bench("readers.py", "Eight readers on one server (reader profiles)"),
}


def head(tiny: bool) -> str:
    kind = ("**A tiny run** (`--tiny`, the test suite's): every benchmark at its smallest, several at once; "
            "the figures mean nothing.\n\n" if tiny else "")
    return f"""# Benchmarks

{kind}Written by `make bench` (`bench/all_benches.py`): each benchmark below at its real size, one after the
other, none sharing the CPU with another. A section names its script, the day and the machine it ran
on and how long it took; `.venv/bin/python bench/all_benches.py NAME ...` runs some again and rewrites
their sections only. [docs/performance.md](../docs/performance.md) reads the figures.
"""


def run(name: str, tiny: bool, out: Path, logs: Path, timeout_s: float | None) -> dict:
    bench = BENCHES[name]
    command = [sys.executable, str(BENCH / bench.script), *(["--tiny"] if tiny else []), "--out", str(out)]
    print(f"{name}: {shlex.join(command[1:])}", flush=True)
    load = os.getloadavg()[0]
    started = time.monotonic()
    timed_out = False
    with (logs / f"{name}.out").open("w") as stdout, (logs / f"{name}.err").open("w") as stderr:
        # A session of its own: a benchmark that outlives `timeout_s` goes with everything it started.
        process = subprocess.Popen(command, cwd=ROOT, stdout=stdout, stderr=stderr, start_new_session=True)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            for signal_number, grace_s in ((signal.SIGTERM, 20), (signal.SIGKILL, None)):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal_number)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(grace_s)
                    break
    seconds = time.monotonic() - started
    load = max(load, os.getloadavg()[0])
    outcome = ("done" if process.returncode == 0 else f"TIMED OUT, stopped after {timeout_s:g} s" if timed_out
               else f"FAILED (exit {process.returncode})")
    print(f"{name}: {outcome} in {seconds:.0f} s", flush=True)
    return {"returncode": process.returncode, "timed_out": timed_out, "seconds": round(seconds, 1), "tiny": tiny,
            "load": round(load, 1)}


RAY_LINE = re.compile(r"^(\x1b\[[0-9;]*m)*\((raylet|[\w:]+ pid=\d+)")
"""A line Ray's processes printed into the benchmark's output (`(raylet) ...`, `(ServeController pid=1) ...`)."""


def section(name: str, result: dict, out: Path, logs: Path) -> str:
    bench = BENCHES[name]
    lines = [line for line in (logs / f"{name}.out").read_text().rstrip("\n").splitlines()
             if not RAY_LINE.match(line)]
    if bench.last_lines:
        lines = lines[-bench.last_lines:]
    pictures = "".join(f"\n![{bench.title}]({picture})\n" for picture in bench.pictures if (out / picture).exists())
    return f"""## {bench.title} (`bench/{bench.script}`)

Run on {datetime.date.today()} on {machine()}, in {result["seconds"]:.0f} s{" (tiny)" if result["tiny"] else ""};
the machine's load average (1 minute) read {result["load"]:g} at its start or end, with {os.cpu_count()} cores:

```console
$ .venv/bin/python bench/{bench.script}{" --tiny" if result["tiny"] else ""}
{chr(10).join(lines)}
```
{pictures}"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"benchmarks to run, of: {' '.join(BENCHES)}")
    parser.add_argument("--tiny", action="store_true", help="the smallest runs, as the test suite's")
    parser.add_argument("--jobs", type=int, default=1, help="benchmarks run at once (with --tiny only)")
    parser.add_argument("--out", type=Path, default=BENCH, help="folder of RESULTS.md and the pictures (bench/)")
    parser.add_argument("--logs", type=Path, help="folder of each benchmark's output and log (a temporary one)")
    parser.add_argument("--timeout-s", type=float, help="stop a benchmark, and what it started, after this long "
                        "(none; 900 with --tiny)")
    options = parser.parse_args()
    if options.tiny and options.timeout_s is None:
        options.timeout_s = 900
    if unknown := set(options.names) - set(BENCHES):
        parser.error(f"no such benchmark: {' '.join(sorted(unknown))}")
    if options.jobs > 1 and not options.tiny:
        parser.error("measured runs never share the CPU: --jobs needs --tiny")
    names = options.names or list(BENCHES)
    out = options.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    logs = (options.logs or Path(tempfile.mkdtemp(prefix="ocr-bench-logs-"))).resolve()
    logs.mkdir(parents=True, exist_ok=True)
    print(f"logs in {logs}", flush=True)

    with concurrent.futures.ThreadPoolExecutor(options.jobs) as pool:
        results = dict(zip(names, pool.map(lambda name: run(name, options.tiny, out, logs, options.timeout_s), names),
                           strict=True))
    (logs / "status.json").write_text(json.dumps(results, indent=2))
    if "head" not in sections(out) or options.tiny or not options.names:
        write_section(out, "head", head(options.tiny))
    for name, result in results.items():
        if result["returncode"] == 0 and not BENCHES[name].own_section:
            write_section(out, name, section(name, result, out, logs))
    failed = [name for name, result in results.items() if result["returncode"]]
    print(f"wrote {out / 'RESULTS.md'}" + (f"; failed: {', '.join(failed)} (logs in {logs})" if failed else ""))
    for name in failed:
        print(f"--- {name}: the end of its log ---\n" + "\n".join(
            (logs / f"{name}.err").read_text().splitlines()[-40:]), file=sys.stderr)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
