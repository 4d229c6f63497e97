"""The API tokens a request may carry: `OCR_SERVE_API_TOKEN`, and every line of the file that
`OCR_SERVE_API_TOKEN_FILE` names (a mounted Kubernetes Secret, a file only the operator reads).

The file is read again whenever it changes (checked at most once a second), so a token is rotated on
a running server without a restart: add the new token as a second line, move the clients to it, then
remove the old line. Tokens are compared in constant time; none is ever logged.
"""

import hmac
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

API_TOKEN_ENV = "OCR_SERVE_API_TOKEN"
API_TOKEN_FILE_ENV = "OCR_SERVE_API_TOKEN_FILE"
CHECK_EVERY_S = 1.0
audit = logging.getLogger("ray.serve.audit")
"""Changes of the server's settings, models and tokens: one line each, who and what, never a secret."""


class ApiTokens:
    def __init__(self, token: str | None = None, file: Path | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self._fixed = (token.encode(),) if token else ()
        self.file = file
        self._clock = clock
        self._lock = threading.Lock()
        self._checked_at = float("-inf")
        self._seen: tuple[int, int] | None = None
        self._from_file: tuple[bytes, ...] = ()
        self._reload()

    @classmethod
    def from_environment(cls) -> "ApiTokens":
        """The tokens the server's environment names (never a config file: Serve shows configs)."""
        path = os.environ.get(API_TOKEN_FILE_ENV)
        return cls(os.environ.get(API_TOKEN_ENV) or None, Path(path) if path else None)

    def _reload(self) -> None:
        """Read the file again if it changed since the last look (its modification time and size)."""
        if self.file is None:
            return
        try:
            stat = self.file.stat()
            seen = (stat.st_mtime_ns, stat.st_size)
            if seen == self._seen:
                return
            lines = self.file.read_text(encoding="utf-8").splitlines()
        except OSError as exc:  # missing or unreadable: no token from it (fail closed), said once
            if self._seen != (-1, -1):
                audit.warning("the API token file %s cannot be read (%s): only %s counts", self.file,
                              type(exc).__name__, API_TOKEN_ENV if self._fixed else "no token")
            self._seen, self._from_file = (-1, -1), ()
            return
        tokens = tuple(line.strip().encode() for line in lines if line.strip() and not line.lstrip().startswith("#"))
        if self._seen is not None:
            audit.info("API tokens reloaded from %s: %d token(s), was %d", self.file, len(tokens),
                       len(self._from_file))
        self._seen, self._from_file = seen, tokens

    def current(self) -> tuple[bytes, ...]:
        with self._lock:
            now = self._clock()
            if now - self._checked_at >= CHECK_EVERY_S:
                self._checked_at = now
                self._reload()
            return self._fixed + self._from_file

    @property
    def configured(self) -> bool:
        """Whether the server has a token at all (a file counts even while empty: it is the operator's
        way to require one)."""
        return bool(self._fixed) or self.file is not None

    def matches(self, given: str) -> bool:
        """Whether `given` is one of the tokens, compared in constant time with each."""
        candidate = given.encode()
        found = False
        for token in self.current():
            found |= hmac.compare_digest(candidate, token)
        return found
