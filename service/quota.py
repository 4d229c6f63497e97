"""How many new results (boxes, texts read, translations) one client may have the models compute in an
hour. Each is a stored row and model time; options are part of a result's key, so a client varying
them (`ignore_chars`, a language model's temperature) would otherwise grow the store without bound.
Counted per client address (under a reader profile's address, per profile:
`profiles.max_new_results_per_hour`) on one ingress replica (replicas do not share counts: N replicas
allow up to N times the limit), for clients without the API token and not on this machine."""

import threading
import time
from collections import deque
from collections.abc import Callable

from core.errors import TooManyRequests

WINDOW_S = 3600.0
MAX_TRACKED_CLIENTS = 100_000
"""Past this many clients in the window, the oldest-seen are forgotten (memory stays bounded)."""


class ResultQuota:
    def __init__(self, per_hour: int, clock: Callable[[], float] = time.monotonic, *, whose: str = "You",
                 most: str = "one client"):
        """`whose` results are counted and what `most` allows them, as the refusal says (per client
        address; a reader profile's quota counts per profile)."""
        self.per_hour = per_hour
        self.clock = clock
        self.whose = whose
        self.most = most
        self._lock = threading.Lock()
        self._spent: dict[str, deque[tuple[float, int]]] = {}

    def _used(self, client: str, now: float) -> int:
        spent = self._spent.get(client)
        if spent is None:
            return 0
        while spent and spent[0][0] <= now - WINDOW_S:
            spent.popleft()
        if not spent:
            del self._spent[client]
            return 0
        return sum(count for _, count in spent)

    def check(self, client: str) -> None:
        """Refuse (429) a client that had its hour's results computed already."""
        with self._lock:
            now = self.clock()
            used = self._used(client, now)
            if used >= self.per_hour:
                wait = int(self._spent[client][0][0] + WINDOW_S - now) + 1
                raise TooManyRequests(
                    f"{self.whose} had {used} new results computed in the last hour, the most {self.most} may "
                    f"(stored results are answered without limit); try again in {wait // 60 + 1} minutes.")

    def charge(self, client: str, results: int) -> None:
        if results <= 0:
            return
        with self._lock:
            now = self.clock()
            self._spent.setdefault(client, deque()).append((now, results))
            if len(self._spent) > MAX_TRACKED_CLIENTS:
                for stale in list(self._spent)[:len(self._spent) - MAX_TRACKED_CLIENTS]:
                    del self._spent[stale]
