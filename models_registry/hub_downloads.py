"""Hugging Face weights fetched into the Hugging Face cache in the background, with their progress.

`HubDownloads` runs one `huggingface_hub.snapshot_download` per repository in a thread of its own
(the hub endpoint and cache come from huggingface_hub's environment: `HF_ENDPOINT`, `HF_HOME`,
`HF_HUB_CACHE`), and reports progress by watching the cache: the chosen files of the commit's listing
give the total; those complete in the snapshot and the `.incomplete` ones being written give the bytes
so far. Serve-free, so tests drive it directly;
`deployments/model_downloads.py` runs it as one Ray actor per application.

A download fetches one commit, chosen before anything is fetched: the entry's `weights.revision`,
or, for an entry that pins none and only where `allow_unpinned_downloads` allows it, the commit the
main branch names when the download starts (recorded as the cache's `refs/main` once complete, and
never followed again: a complete snapshot is kept). The commit's file listing gives the files to fetch
(`choose_files`: one weight format, safetensors first, and none of other frameworks) and their size:
a model larger than `max_download_bytes`, or one that would leave less than the margin free on the
cache's disk, is refused before a byte is fetched.

A model is only ever loaded from a snapshot that `cached_snapshot` finds complete: huggingface_hub
itself refuses, offline, a snapshot whose stored file listing names a chosen file it lacks (a download
that failed halfway), so no half-written model can be loaded, by this process or any model replica.

A failed download's `error` is shown to clients (513 answers, `GET /status`): it names the repository
and a short reason, never a local path, a URL or what the hub answered; the log has the exception.
"""

import contextlib
import errno
import glob
import logging
import os
import shutil
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from core.settings import WeightSources

log = logging.getLogger(__name__)

HUB_IGNORE_PATTERNS = ["*.h5", "*.msgpack", "*.ot", "*.onnx", "onnx/*", "*.tflite", "*.mlmodel", "coreml/*",
                       "openvino/*", "*.gguf"]
"""Files of other frameworks (TensorFlow, Flax, Rust, ONNX, ...) in a repository: never fetched, and
not needed for a snapshot to count as complete."""
BIN_WEIGHTS = (".bin", ".bin.index.json")
"""PyTorch's pickled weights as `transformers` loads them (`pytorch_model*.bin` and their index):
fetched only from a repository that has no safetensors."""
OTHER_PICKLES = (".pt", ".pth", ".ckpt", ".pkl", ".pickle")
"""Pickled checkpoints `transformers` never loads (training states, other tools' formats): never fetched."""
REPORT_EVERY_S = 5.0
"""How often a running download's progress is logged."""


@dataclass(frozen=True)
class Download:
    """One repository's download, as the ingress and `/status` see it."""

    repo: str
    state: Literal["downloading", "done", "failed"]
    bytes_done: int = 0
    bytes_total: int | None = None
    """Unknown (None) until the hub has listed the commit's files."""
    error: str | None = None
    """Why it failed, fit for clients (the repository and a short reason): the next selection of the
    model tries again."""
    started_at: float = 0.0
    finished_at: float | None = None
    revision: str | None = None
    """The commit fetched: the entry's, or for an unpinned entry main's once the hub has named it."""

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


@dataclass(frozen=True)
class DownloadRules:
    """What the configuration allows a download (`WeightSources`)."""

    max_bytes: int
    free_disk_margin_bytes: int
    allow_unpinned: bool

    @classmethod
    def of(cls, weights: WeightSources) -> "DownloadRules":
        return cls(weights.max_download_bytes, weights.download_free_disk_margin_bytes,
                   weights.allow_unpinned_downloads)


class DownloadRefused(Exception):
    """A download this server does not start, or does not count as done; the message is for clients."""


def megabytes(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def human_size(size: int) -> str:
    """"8.0 GB", "298.5 MB", "12.3 kB"."""
    if size >= 1e9:
        return f"{size / 1e9:.1f} GB"
    return megabytes(size) if size >= 1e6 else f"{size / 1e3:.1f} kB"


def choose_files(files: dict[str, int]) -> dict[str, int]:
    """Of a commit's files (path -> size), those a download fetches and a complete snapshot has: all but
    other frameworks' (`HUB_IGNORE_PATTERNS`), and one weight format, safetensors where the repository
    has them, else PyTorch's `.bin`; never other pickled checkpoints."""
    from huggingface_hub.utils import filter_repo_objects

    kept = {path: files[path] for path in filter_repo_objects(files, ignore_patterns=HUB_IGNORE_PATTERNS)}
    has_safetensors = any(path.endswith(".safetensors") for path in kept)
    dropped = (*BIN_WEIGHTS, *OTHER_PICKLES) if has_safetensors else OTHER_PICKLES
    return {path: size for path, size in kept.items() if not path.endswith(dropped)}


def _patterns(files) -> list[str]:
    """`allow_patterns` that match these paths and no others."""
    return [glob.escape(path) for path in files]


def _storage(repo: str) -> Path:
    from huggingface_hub import constants
    from huggingface_hub.file_download import repo_folder_name

    return Path(constants.HF_HUB_CACHE) / repo_folder_name(repo_id=repo, repo_type="model")


def _cached_main(repo: str) -> str | None:
    """The commit the cache's `refs/main` names: the one an unpinned entry loads."""
    try:
        commit = (_storage(repo) / "refs" / "main").read_text().strip()
    except OSError:
        return None
    return commit if len(commit) == 40 and all(c in "0123456789abcdef" for c in commit) else None


def _record_main(repo: str, commit: str) -> None:
    ref = _storage(repo) / "refs" / "main"
    ref.parent.mkdir(parents=True, exist_ok=True)
    written = ref.with_name(f"main.{os.getpid()}.{threading.get_ident()}.tmp")
    written.write_text(commit)
    os.replace(written, ref)


def cached_snapshot(repo: str, revision: str | None = None) -> Path | None:
    """The complete snapshot of `repo` at `revision` (a commit id; None: the commit the cache's
    `refs/main` names) in the Hugging Face cache, else None (never downloads). Complete: it has every
    file `choose_files` takes of the commit's listing, where the cache stores that listing."""
    from huggingface_hub import get_cached_repo_tree, snapshot_download

    commit = revision or _cached_main(repo)
    if commit is None:
        return None
    try:
        listing = get_cached_repo_tree(repo, revision=commit)
    except Exception:  # no stored listing (a snapshot put there by hand): it is taken as it is
        allow = None
    else:
        allow = _patterns(choose_files({file.path: file.size for file in listing}))
    try:
        folder = Path(snapshot_download(repo, revision=commit, local_files_only=True, allow_patterns=allow,
                                        ignore_patterns=HUB_IGNORE_PATTERNS))
    except Exception:  # not cached (LocalEntryNotFoundError), incomplete (IncompleteSnapshotError), unreadable
        return None
    return folder if (folder / "config.json").is_file() else None


def _bytes_present(repo: str, commit: str, files: dict[str, int]) -> int:
    """Bytes of the chosen files in the cache so far: complete files and the `.incomplete` ones."""
    snapshot = _storage(repo) / "snapshots" / commit
    done = sum(size for path, size in files.items() if (snapshot / path).exists())
    for partial in (_storage(repo) / "blobs").glob("*.incomplete"):
        with contextlib.suppress(FileNotFoundError):  # finished (renamed) meanwhile
            done += partial.stat().st_size
    return done


def _free_disk(folder: Path) -> int:
    """Free bytes on the disk of `folder`, or of its nearest existing parent."""
    while not folder.exists() and folder.parent != folder:
        folder = folder.parent
    return shutil.disk_usage(folder).free


def _reason(exc: BaseException, revision: str | None) -> str:
    """Why a download failed, in a few words fit for clients: never a path, a URL or the hub's answer."""
    import httpx2
    from huggingface_hub import errors

    if isinstance(exc, DownloadRefused):
        return str(exc)
    if isinstance(exc, errors.RevisionNotFoundError):
        return f"the hub refused the revision {revision or 'main'}"
    if isinstance(exc, errors.GatedRepoError):
        return "the repository is gated: the hub refused it without an access token granted access"
    if isinstance(exc, errors.RepositoryNotFoundError):
        return "the hub has no such repository (or it is private)"
    if isinstance(exc, errors.IncompleteSnapshotError):
        return "the downloaded snapshot is incomplete"
    if isinstance(exc, errors.HfHubHTTPError) and getattr(exc, "response", None) is not None:
        return f"the hub answered with status {exc.response.status_code}"
    if isinstance(exc, httpx2.TransportError | errors.OfflineModeIsEnabled | errors.LocalEntryNotFoundError):
        return "the connection to the hub failed"
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return "the disk is full"
    if isinstance(exc, OSError) and exc.errno in errno.errorcode:
        return f"writing the Hugging Face cache failed ({errno.errorcode[exc.errno]})"
    return f"it failed ({type(exc).__name__}); the server's log has the details"


class HubDownloads:
    """The downloads of one application: at most one per repository at a time; a failed one is
    tried again when `start` is called again (the next selection of its model)."""

    def __init__(self, endpoint: str | None = None, report_every_s: float = REPORT_EVERY_S):
        """`endpoint`: the hub's address; default huggingface_hub's (`HF_ENDPOINT`, else huggingface.co)."""
        self.endpoint = endpoint
        self.report_every_s = report_every_s
        self._lock = threading.Lock()
        self._downloads: dict[str, Download] = {}
        self._plans: dict[str, tuple[str, dict[str, int]]] = {}
        """Per repository, the commit being fetched and its chosen files with their sizes."""

    def start(self, repo: str, revision: str | None = None, rules: DownloadRules | None = None) -> Download:
        """The repository's download: running, finished, or started now (again, after a failure).
        `revision`: the entry's commit; None fetches main's, where `rules` allow unpinned downloads."""
        rules = rules or DownloadRules.of(WeightSources())
        with self._lock:
            current = self._downloads.get(repo)
            if current is not None and current.state == "downloading":
                return self._with_progress(current)
            if cached_snapshot(repo, revision) is not None:
                now = time.time()
                done = current if current is not None and current.state == "done" else Download(
                    repo, "done", started_at=now, finished_at=now, revision=revision or _cached_main(repo))
                self._downloads[repo] = done
                return done
            if current is not None and current.state == "failed":
                log.info("trying the download of %s again (it failed: %s)", repo, current.error)
            started = Download(repo, "downloading", started_at=time.time(), revision=revision)
            self._downloads[repo] = started
            self._plans.pop(repo, None)
        threading.Thread(target=self._run, args=(repo, revision, rules), name=f"download {repo}", daemon=True).start()
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

    def _measure(self, repo: str) -> tuple[int, int | None]:
        """Bytes in the cache so far, and the total once the commit's files are listed and chosen."""
        plan = self._plans.get(repo)
        if plan is None:
            return 0, None
        commit, files = plan
        return _bytes_present(repo, commit, files), sum(files.values())

    def _with_progress(self, download: Download) -> Download:
        if download.state != "downloading":
            return download
        done, total = self._measure(download.repo)
        return replace(download, bytes_done=done, bytes_total=total)

    def _finish(self, repo: str, **changes) -> Download:
        done, total = self._measure(repo)
        with self._lock:
            finished = replace(self._downloads[repo], bytes_done=done, bytes_total=total, finished_at=time.time(),
                               **changes)
            self._downloads[repo] = finished
        return finished

    def _plan(self, repo: str, revision: str | None, rules: DownloadRules) -> tuple[str, dict[str, int]]:
        """The commit to fetch and its chosen files, checked against the rules; nothing is fetched yet."""
        from huggingface_hub import HfApi, constants
        from huggingface_hub.hf_api import RepoFile

        api = HfApi(endpoint=self.endpoint)
        commit = revision
        if commit is None:
            if not rules.allow_unpinned:
                raise DownloadRefused("its entry pins no weights.revision, and unpinned downloads are off")
            commit = api.model_info(repo, revision="main").sha
            if not commit:
                raise DownloadRefused("the hub named no commit for its main branch")
        listing = {file.path: file.size for file in api.list_repo_tree(repo, revision=commit, recursive=True)
                   if isinstance(file, RepoFile)}
        files = choose_files(listing)
        if "config.json" not in files:
            raise DownloadRefused("the repository has no config.json")
        if not any(path.endswith((".safetensors", ".bin")) for path in files):
            raise DownloadRefused("the repository has no weights this server loads (safetensors or PyTorch .bin)")
        total = sum(files.values())
        if total > rules.max_bytes:
            raise DownloadRefused(f"larger than the limit of {human_size(rules.max_bytes)}: {human_size(total)}")
        needed = total - _bytes_present(repo, commit, files)
        free = _free_disk(Path(constants.HF_HUB_CACHE))
        if free - rules.free_disk_margin_bytes < needed:
            raise DownloadRefused(f"not enough free disk: {human_size(needed)} to fetch, {human_size(free)} free "
                                  f"of which {human_size(rules.free_disk_margin_bytes)} must stay free")
        return commit, files

    def _run(self, repo: str, revision: str | None, rules: DownloadRules) -> None:
        from huggingface_hub import constants, snapshot_download

        log.info("downloading %s (%s) from %s into %s", repo, revision or "unpinned: main's commit",
                 self.endpoint or constants.ENDPOINT, constants.HF_HUB_CACHE)
        stop = threading.Event()
        reporter = threading.Thread(target=self._report, args=(repo, stop), daemon=True)
        reporter.start()
        try:
            commit, files = self._plan(repo, revision, rules)
            with self._lock:
                self._plans[repo] = commit, files
                self._downloads[repo] = replace(self._downloads[repo], revision=commit)
            log.info("%s at commit %s: %d files, %s", repo, commit, len(files), megabytes(sum(files.values())))
            snapshot_download(repo, revision=commit, allow_patterns=_patterns(files), endpoint=self.endpoint)
            if cached_snapshot(repo, commit) is None:
                raise DownloadRefused("the downloaded snapshot is incomplete")
            if revision is None:  # an unpinned entry loads this commit from now on
                _record_main(repo, commit)
                log.warning("%s was downloaded unpinned, at commit %s: pin it in its entry (weights.revision: %s)",
                            repo, commit, commit)
        except Exception as exc:
            finished = self._finish(repo, state="failed", error=f"{repo}: {_reason(exc, revision)}")
            log.error("the download of %s failed at %s: %s", repo, finished.describe(), finished.error,
                      exc_info=None if isinstance(exc, DownloadRefused) else exc)
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
