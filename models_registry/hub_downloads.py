"""Hugging Face weights fetched into the Hugging Face cache in the background, with their progress.

`HubDownloads` runs one `huggingface_hub.snapshot_download` per repository in a thread of its own
(the hub endpoint and cache come from huggingface_hub's environment: `HF_ENDPOINT`, `HF_HOME`,
`HF_HUB_CACHE`), and reports progress by watching the cache: the repository's file listing, which
`snapshot_download` stores before it fetches anything, gives the total; complete files and the
`.incomplete` ones being written give the bytes so far. Serve-free, so tests drive it directly;
`deployments/model_downloads.py` runs it as one Ray actor per application.

A model is only ever loaded from a snapshot that `cached_snapshot` finds complete: huggingface_hub
itself refuses, offline, a snapshot whose stored file listing names a file it lacks (a download that
failed halfway), so no half-written model can be loaded, by this process or any model replica.
"""

import contextlib
import logging
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

log = logging.getLogger(__name__)

HUB_IGNORE_PATTERNS = ["*.h5", "*.msgpack", "*.ot", "*.onnx", "onnx/*", "*.tflite", "*.mlmodel", "coreml/*",
                       "openvino/*", "*.gguf"]
"""Files of other frameworks (TensorFlow, Flax, Rust, ONNX, ...) in a repository: never fetched, and
not needed for a snapshot to count as complete."""
REPORT_EVERY_S = 5.0
"""How often a running download's progress is logged."""


@dataclass(frozen=True)
class Download:
    """One repository's download, as the ingress and `/status` see it."""

    repo: str
    state: Literal["downloading", "done", "failed"]
    bytes_done: int = 0
    bytes_total: int | None = None
    """Unknown (None) until the hub has listed the repository's files."""
    error: str | None = None
    """Why it failed: the next selection of the model tries again."""
    started_at: float = 0.0
    finished_at: float | None = None

    @property
    def percent(self) -> int:
        if not self.bytes_total:
            return 100 if self.state == "done" else 0
        return min(100, int(100 * self.bytes_done / self.bytes_total))

    def describe(self) -> str:
        """"45% of 298.5 MB", or "0%" before the size is known."""
        if self.bytes_total is None:
            return f"{self.percent}%"
        return f"{self.percent}% of {megabytes(self.bytes_total)}"


def megabytes(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def cached_snapshot(repo: str) -> Path | None:
    """The complete snapshot of `repo` in the Hugging Face cache, else None (never downloads)."""
    from huggingface_hub import snapshot_download

    try:
        folder = Path(snapshot_download(repo, local_files_only=True, ignore_patterns=HUB_IGNORE_PATTERNS))
    except Exception:  # not cached (LocalEntryNotFoundError), incomplete (IncompleteSnapshotError), unreadable
        return None
    return folder if (folder / "config.json").is_file() else None


def _progress(repo: str) -> tuple[int, int | None]:
    """Bytes in the cache so far, and the total once the repository's file listing is stored."""
    from huggingface_hub import constants, get_cached_repo_tree
    from huggingface_hub.file_download import repo_folder_name
    from huggingface_hub.utils import filter_repo_objects

    storage = Path(constants.HF_HUB_CACHE) / repo_folder_name(repo_id=repo, repo_type="model")
    try:
        commit = (storage / "refs" / "main").read_text().strip()
        files = list(filter_repo_objects(get_cached_repo_tree(repo, revision=commit),
                                         ignore_patterns=HUB_IGNORE_PATTERNS, key=lambda file: file.path))
    except Exception:  # the listing is not stored yet
        return 0, None
    snapshot = storage / "snapshots" / commit
    done = sum(file.size for file in files if (snapshot / file.path).exists())
    for partial in (storage / "blobs").glob("*.incomplete"):
        with contextlib.suppress(FileNotFoundError):  # finished (renamed) meanwhile
            done += partial.stat().st_size
    return done, sum(file.size for file in files)


def _reason(exc: BaseException) -> str:
    first_line = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first_line}"[:300]


class HubDownloads:
    """The downloads of one application: at most one per repository at a time; a failed one is
    tried again when `start` is called again (the next selection of its model)."""

    def __init__(self, endpoint: str | None = None, report_every_s: float = REPORT_EVERY_S):
        """`endpoint`: the hub's address; default huggingface_hub's (`HF_ENDPOINT`, else huggingface.co)."""
        self.endpoint = endpoint
        self.report_every_s = report_every_s
        self._lock = threading.Lock()
        self._downloads: dict[str, Download] = {}

    def start(self, repo: str) -> Download:
        """The repository's download: running, finished, or started now (again, after a failure)."""
        with self._lock:
            current = self._downloads.get(repo)
            if current is not None and current.state == "downloading":
                return self._with_progress(current)
            if cached_snapshot(repo) is not None:
                now = time.time()
                done = current if current is not None and current.state == "done" else Download(
                    repo, "done", started_at=now, finished_at=now)
                self._downloads[repo] = done
                return done
            if current is not None and current.state == "failed":
                log.info("trying the download of %s again (it failed: %s)", repo, current.error)
            started = Download(repo, "downloading", started_at=time.time())
            self._downloads[repo] = started
        threading.Thread(target=self._run, args=(repo,), name=f"download {repo}", daemon=True).start()
        return started

    def state(self, repo: str) -> Download | None:
        """The repository's download, or None if none was started (by this process)."""
        with self._lock:
            current = self._downloads.get(repo)
        return None if current is None else self._with_progress(current)

    def states(self) -> dict[str, Download]:
        with self._lock:
            known = dict(self._downloads)
        return {repo: self._with_progress(download) for repo, download in known.items()}

    def _with_progress(self, download: Download) -> Download:
        if download.state != "downloading":
            return download
        done, total = _progress(download.repo)
        return replace(download, bytes_done=done, bytes_total=total)

    def _finish(self, repo: str, **changes) -> Download:
        done, total = _progress(repo)
        with self._lock:
            finished = replace(self._downloads[repo], bytes_done=done, bytes_total=total, finished_at=time.time(),
                               **changes)
            self._downloads[repo] = finished
        return finished

    def _run(self, repo: str) -> None:
        from huggingface_hub import constants, snapshot_download

        log.info("downloading %s from %s into %s", repo, self.endpoint or constants.ENDPOINT, constants.HF_HUB_CACHE)
        stop = threading.Event()
        reporter = threading.Thread(target=self._report, args=(repo, stop), daemon=True)
        reporter.start()
        try:
            snapshot_download(repo, ignore_patterns=HUB_IGNORE_PATTERNS, endpoint=self.endpoint)
            if cached_snapshot(repo) is None:
                raise RuntimeError("the downloaded snapshot is incomplete or has no config.json")
        except Exception as exc:
            finished = self._finish(repo, state="failed", error=_reason(exc))
            log.error("the download of %s failed at %s: %s", repo, finished.describe(), finished.error)
        else:
            finished = self._finish(repo, state="done")
            log.info("downloaded %s (%s in %.1f s)", repo, megabytes(finished.bytes_done),
                     finished.finished_at - finished.started_at)
        finally:
            stop.set()

    def _report(self, repo: str, stop: threading.Event) -> None:
        """Log the progress every `report_every_s` while the download runs."""
        while not stop.wait(self.report_every_s):
            current = self.state(repo)
            if current is not None and current.state == "downloading":
                log.info("downloading %s: %s", repo, current.describe())
