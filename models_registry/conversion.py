"""Models converted for a faster engine (ONNX Runtime, CTranslate2), built once and kept on disk.

A conversion lives in `<converted_dir>/<engine>/<model id>/<digest>/`, where the digest covers the
source weight files' bytes and the converter's own parameters: new weights or a new converter give
a new folder, and the old one is removed. Each folder holds a manifest of its files' checksums,
written last; a folder whose manifest is missing or does not match (a crash mid-write, a disk
error, a hand edit) is rebuilt with a warning in the log, never served. Replicas that start
together convert once: the first holds a file lock while it builds, the others then find it built.
"""

import contextlib
import fcntl
import hashlib
import json
import logging
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
_CHUNK = 1 << 20


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def sources_digest(sources: Iterable[Path], parameters: dict) -> str:
    """Checksum of the source files (name and bytes; folders recursively) and the converter's parameters."""
    digest = hashlib.sha256(json.dumps(parameters, sort_keys=True, default=str).encode())
    for source in sorted(Path(s) for s in sources):
        files = sorted(p for p in source.rglob("*") if p.is_file()) if source.is_dir() else [source]
        for path in files:
            digest.update(path.name.encode())
            digest.update(file_digest(path).encode())
    return digest.hexdigest()[:32]


def _manifest_problem(folder: Path) -> str | None:
    """Why a converted folder cannot be trusted, or None when every file matches its manifest."""
    try:
        expected = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        return f"no readable manifest ({exc})"
    present = {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST}
    if present != set(expected):
        return f"files differ from the manifest (missing {sorted(set(expected) - present)}, " \
               f"extra {sorted(present - set(expected))})"
    for name, checksum in expected.items():
        if file_digest(folder / name) != checksum:
            return f"{name} does not match its checksum"
    return None


def _write_manifest(folder: Path) -> None:
    files = {str(p.relative_to(folder)): file_digest(p) for p in sorted(folder.rglob("*")) if p.is_file()}
    (folder / MANIFEST).write_text(json.dumps(files, indent=1, sort_keys=True))


def _safe_name(model_id: str) -> str:
    return model_id.replace("/", "--")


def converted(root: Path, engine: str, model_id: str, sources: Iterable[Path], parameters: dict,
              build: Callable[[Path], None]) -> Path:
    """The folder of `model_id` converted for `engine`: reused when its sources and parameters are
    unchanged and its files intact, otherwise built by `build(folder)` (which fills an empty folder)."""
    sources = list(sources)
    model_dir = Path(root).expanduser() / engine / _safe_name(model_id)
    model_dir.mkdir(parents=True, exist_ok=True)
    digest = sources_digest(sources, {"engine": engine, **parameters})
    target = model_dir / digest
    with open(model_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one builder per model; the others wait, then reuse
        if target.is_dir():
            problem = _manifest_problem(target)
            if problem is None:
                return target
            log.warning("converted %s model %s in %s is damaged (%s): converting it again",
                        engine, model_id, target, problem)
            shutil.rmtree(target)
        for stale in model_dir.iterdir():  # conversions of older weights or parameters
            if stale.is_dir():
                log.info("removing %s conversion of %s made from other weights: %s", engine, model_id, stale)
                shutil.rmtree(stale, ignore_errors=True)
        log.info("converting %s for %s into %s (once; later starts reuse it)", model_id, engine, target)
        building = Path(tempfile.mkdtemp(prefix=f".{digest}-", dir=model_dir))
        building.chmod(0o755)  # mkdtemp's 0700 would hide a shared cache from replicas of other users
        try:
            build(building)
            _write_manifest(building)
            building.rename(target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                shutil.rmtree(building)
    return target
