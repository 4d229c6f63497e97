"""Steady load on a server from several clients, every answer recorded with its time: the load under
which tests/cluster/test_multinode.py breaks the cluster, and bench/node_loss.py's traffic.

Every request carries work never sent before (a new text, a new image), so each one runs the models
and writes the store instead of reading an earlier answer.
"""

import itertools
import threading
import time
from dataclasses import dataclass, field

import httpx

from .images import encode, render

HUNG = 0
"""The status recorded for a request without an answer within the client's timeout."""


def sign(text: str) -> tuple[str, str]:
    """The image the load's page clients send for `text`, as the extension sends it (base64, md5)."""
    return encode(render([((20, 20), text)], size=(420, 80)))


@dataclass
class Answer:
    started: float
    """Seconds from the start of the load to the request's start."""
    seconds: float
    status: int
    body: str
    retry_after: str | None
    sent: str
    """The text translated (run_tsl) or drawn in the image (run_ocrtsl)."""

    def texts(self) -> list[str]:
        """The source texts this answer translated (an image's as read)."""
        if self.status != 200:
            return []
        if self.body.startswith('{"result"'):
            return [block["ocr"] for block in httpx.Response(200, text=self.body).json()["result"]]
        return [self.sent]


@dataclass
class SteadyLoad:
    """`clients` threads sending requests one after another until the load stops: even clients pages
    (run_ocrtsl, a sign each), odd ones texts (run_tsl). `tag` keeps each load's work its own."""
    url: str
    headers: dict[str, str]
    tag: str
    clients: int = 4
    timeout_s: float = 90
    answers: list[Answer] = field(default_factory=list)

    def __post_init__(self):
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client, args=(number,), daemon=True)
                         for number in range(self.clients)]
        self.began = 0.0

    def now(self) -> float:
        """Seconds since the load began."""
        return time.monotonic() - self.began

    def __enter__(self) -> "SteadyLoad":
        self.began = time.monotonic()
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def _client(self, number: int) -> None:
        with httpx.Client(base_url=self.url, headers=self.headers, timeout=self.timeout_s) as http:
            for count in itertools.count():
                if self._stop.is_set():
                    return
                started = self.now()
                if number % 2:
                    sent = f"The house number {number}{count} is on the {self.tag} hill."
                    request = {"url": "/run_tsl/", "json": {"text": sent}}
                else:
                    sent = f"Sign {self.tag} {number}{count}"
                    contents, md5 = sign(sent)
                    request = {"url": "/run_ocrtsl/", "json": {"contents": contents, "md5": md5}}
                try:
                    response = http.post(**request)
                    status, body, retry_after = response.status_code, response.text, response.headers.get("retry-after")
                except httpx.TimeoutException:
                    status, body, retry_after = HUNG, "", None
                self.answers.append(Answer(started, self.now() - started, status, body, retry_after, sent))

    def failed(self) -> list[Answer]:
        return [answer for answer in self.answers if answer.status != 200]
