"""A local HTTP server that answers as the Hugging Face hub does for `snapshot_download`, serving
model folders built by `tiny_hf.py`; point `HF_ENDPOINT` (or `huggingface_hub.constants.ENDPOINT`) at it.

It answers what a download asks: the repository's commit (`/api/models/<repo>/revision/<rev>`), its
file listing (`/api/models/<repo>/tree/<commit>`) and each file (`HEAD`/`GET /<repo>/resolve/<commit>/<path>`,
with `X-Repo-Commit`, `ETag`, `Content-Length` and ranges). Each repository's main branch is `COMMIT`
(its folder) unless a test moves it; other commits of a repository are folders of their own, and a
commit id it lacks answers 404 as the hub does (`X-Error-Code: RevisionNotFound`), as does a repository
it lacks (`RepoNotFound`). Tests make one file stall halfway (until released) or break halfway (the
connection drops after half the bytes, and every later request for it answers 500), as a slow or failing
network would.
"""

import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

COMMIT = "0123456789abcdef0123456789abcdef01234567"
_COMMIT_ID = re.compile(r"^[0-9a-f]{40}$")
_REVISION = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)/revision/(?P<rev>[^/?]+)$")
_TREE = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)/tree/(?P<rev>[^/?]+)(?P<path>/.*)?$")
_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")


class FakeHub:
    def __init__(self, repos: dict[str, Path], commits: dict[str, dict[str, Path]] | None = None):
        """`repos`: each repository's folder at `COMMIT`; `commits`: a repository's other commits."""
        self.repos = {repo: Path(folder) for repo, folder in repos.items()}
        self.commits = {repo: {COMMIT: folder, **{commit: Path(other) for commit, other in (commits or {}).get(
            repo, {}).items()}} for repo, folder in self.repos.items()}
        self.main = dict.fromkeys(self.repos, COMMIT)
        """The commit each repository's main branch names (a branch name or tag is taken as main)."""
        self.stalled: dict[tuple[str, str], threading.Event] = {}
        """(repo, file) -> released: the file's download pauses halfway until the event is set."""
        self.broken: set[tuple[str, str]] = set()
        """(repo, file): the connection drops after half the file; later requests for it answer 500."""
        self.requests: list[str] = []
        self._served_half: set[tuple[str, str]] = set()
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_HEAD(self):
                hub._answer(self, body=False)

            def do_GET(self):
                hub._answer(self, body=True)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        for released in self.stalled.values():
            released.set()
        self.server.shutdown()
        self.server.server_close()

    def files(self, repo: str, commit: str = COMMIT) -> dict[str, Path]:
        folder = self.commits[repo][commit]
        return {str(path.relative_to(folder)): path for path in sorted(folder.rglob("*")) if path.is_file()}

    def size(self, repo: str, commit: str = COMMIT) -> int:
        return sum(path.stat().st_size for path in self.files(repo, commit).values())

    def _commit(self, repo: str, revision: str) -> str | None:
        commit = revision if _COMMIT_ID.match(revision) else self.main[repo]
        return commit if commit in self.commits[repo] else None

    # -- answers ------------------------------------------------------------------------------
    def _answer(self, handler: BaseHTTPRequestHandler, body: bool) -> None:
        path = handler.path.split("?", 1)[0]
        self.requests.append(f"{handler.command} {path}")
        match = _REVISION.match(path) or _TREE.match(path) or _RESOLVE.match(path)
        if match is None:
            return self._send(handler, 404, b'{"error": "Not found"}', body)
        if match["repo"] not in self.repos:
            return self._send(handler, 404, b'{"error": "Repository not found"}', body,
                              {"X-Error-Code": "RepoNotFound"})
        commit = self._commit(match["repo"], match["rev"])
        if commit is None:
            return self._send(handler, 404, b'{"error": "Invalid rev id"}', body, {"X-Error-Code": "RevisionNotFound"})
        if match.re is _REVISION:
            info = {"id": match["repo"], "modelId": match["repo"], "sha": commit, "private": False,
                    "siblings": [{"rfilename": name} for name in self.files(match["repo"], commit)]}
            return self._send(handler, 200, json.dumps(info).encode(), body, commit=commit)
        if match.re is _TREE:
            listing = [{"type": "file", "path": name, "size": file.stat().st_size, "oid": _oid(file)}
                       for name, file in self.files(match["repo"], commit).items()]
            return self._send(handler, 200, json.dumps(listing).encode(), body, commit=commit)
        return self._file(handler, match["repo"], commit, match["path"], body)

    def _send(self, handler, status: int, content: bytes, body: bool, headers: dict[str, str] | None = None,
              commit: str = COMMIT) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(content)))
        handler.send_header("X-Repo-Commit", commit)
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        if body:
            handler.wfile.write(content)

    def _file(self, handler, repo: str, commit: str, name: str, body: bool) -> None:
        file = self.files(repo, commit).get(name)
        if file is None:
            return self._send(handler, 404, b'{"error": "Entry not found"}', body,
                              {"X-Error-Code": "EntryNotFound"}, commit)
        key = (repo, name)
        if body and key in self.broken and key in self._served_half:
            return self._send(handler, 500, b'{"error": "Internal Error"}', body, commit=commit)
        content = file.read_bytes()
        start = 0
        if body and (requested := re.match(r"bytes=(\d+)-", handler.headers.get("Range", ""))):
            start = int(requested[1])
        part = content[start:]
        handler.send_response(206 if start else 200)
        handler.send_header("Content-Type", "application/octet-stream")
        handler.send_header("Content-Length", str(len(part)))
        if start:
            handler.send_header("Content-Range", f"bytes {start}-{len(content) - 1}/{len(content)}")
        handler.send_header("Accept-Ranges", "bytes")
        handler.send_header("ETag", f'"{_oid(file)}"')
        handler.send_header("X-Repo-Commit", commit)
        handler.end_headers()
        if not body:
            return
        half = len(part) // 2
        handler.wfile.write(part[:half])
        handler.wfile.flush()
        if key in self.broken:
            self._served_half.add(key)
            handler.close_connection = True
            handler.connection.shutdown(2)  # the network drops: the client has half the file
            return
        if key in self.stalled:
            self.stalled[key].wait(120)
        handler.wfile.write(part[half:])

    def repair(self, repo: str, name: str) -> None:
        """The network is back for this file."""
        self.broken.discard((repo, name))
        self._served_half.discard((repo, name))


def _oid(file: Path) -> str:
    return hashlib.sha1(file.read_bytes()).hexdigest()
