"""What the bench scripts share: the repository and tools/ on the import path, a free port, Ray's
token authentication for the Ray clusters a run starts, and the sections of bench/RESULTS.md.

Every script takes `--out DIR` (default bench/) for the files it writes and `--tiny` for the smallest
run that still goes through all of it (the test suite's, tests/bench/); bench/all_benches.py
(`make bench`) runs them and writes RESULTS.md.
"""

import atexit
import os
import platform
import re
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
for _path in (ROOT / "tools", ROOT):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from local_cluster import free_port  # noqa: E402
from ray_token import TOKEN_ENV, token_environment, token_file  # noqa: E402

__all__ = ["BENCH", "ROOT", "free_port", "machine", "own_ray", "sections", "write_section"]

RESULTS = "RESULTS.md"
SECTIONS = ("head", "baseline", "batching", "translation_engines", "bulk", "ingress_proxy", "autoscale", "node_loss",
            "readers")
"""The sections of RESULTS.md, in their order there: `head`, then one per benchmark of all_benches.py."""
_MARKED = re.compile(r"<!-- bench:(?P<name>\w+) -->\n(?P<body>.*?)<!-- /bench:(?P=name) -->\n", re.DOTALL)


def own_ray() -> Path:
    """Ray clusters started from now on by this process and its children are new local ones (not one that
    RAY_ADDRESS names) with Ray's token authentication on and a token of this run's own, in a file that
    goes at exit: never ~/.ray/auth_token, nor a token the caller's environment holds. The token file.
    Before Ray is imported: Ray reads its mode of authentication once, at import."""
    assert "ray" not in sys.modules, "own_ray() comes before Ray is imported"
    folder = Path(tempfile.mkdtemp(prefix="ocr-bench-ray-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    path = token_file(folder / "ray_auth_token")
    for name in (TOKEN_ENV, "RAY_ADDRESS"):
        os.environ.pop(name, None)
    os.environ.update(token_environment(dict(os.environ), path))
    return path


def sections(folder: Path) -> dict[str, str]:
    """The sections of folder/RESULTS.md by name (none where it is absent)."""
    path = folder / RESULTS
    if not path.exists():
        return {}
    return {match["name"]: match["body"] for match in _MARKED.finditer(path.read_text())}


def write_section(folder: Path, name: str, markdown: str) -> Path:
    """`markdown` as the section `name` of folder/RESULTS.md; the other sections stay as they are, in
    SECTIONS' order. Returns the file."""
    found = sections(folder)
    found[name] = markdown.rstrip("\n") + "\n"
    order = [*SECTIONS, *sorted(set(found) - set(SECTIONS))]
    path = folder / RESULTS
    path.write_text("\n".join(f"<!-- bench:{key} -->\n{found[key]}<!-- /bench:{key} -->\n"
                              for key in order if key in found))
    return path


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    try:
        import torch

        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    except ImportError:
        gpu = "GPU unknown (no torch)"
    return f"{cpu}, {os.cpu_count()} cores, {memory_gib:.0f} GiB RAM, {gpu}, {platform.platform()}"
