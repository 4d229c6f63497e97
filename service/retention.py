"""The store's size kept in check: which images requests use is remembered in memory and written in
batches (never on a request's path), and the retention policy prunes on a schedule."""

import asyncio
import logging
import time
from datetime import timedelta

from core.settings import RetentionSettings

from .off_loop import in_thread
from .store import Store

log = logging.getLogger(__name__)

FLUSH_EVERY_S = 30.0


class Retention:
    def __init__(self, store: Store, settings: RetentionSettings):
        self.store = store
        self.settings = settings
        self._used: set[str] = set()

    def used(self, md5: str) -> None:
        """An image a request was answered for (cheap: called on the md5-only path, from any thread)."""
        self._used.add(md5)

    def flush(self) -> None:
        used, self._used = self._used, set()
        self.store.touch_images(used)

    def prune(self) -> dict[str, int]:
        days = self.settings.max_age_days
        removed = self.store.prune(timedelta(days=days) if days is not None else None, self.settings.max_images)
        if any(removed.values()):
            log.info("retention: forgot %s", ", ".join(f"{count} {kind}" for kind, count in removed.items()))
        return removed

    async def run(self) -> None:
        """Flush every half minute and prune every `prune_every_s`, for the life of the replica."""
        next_prune = time.monotonic()
        while True:
            try:
                await in_thread(self.flush)
                if time.monotonic() >= next_prune:
                    next_prune = time.monotonic() + self.settings.prune_every_s
                    await in_thread(self.prune)
            except Exception:  # the store may be briefly unreachable: try again next round
                log.exception("store maintenance failed; trying again in %.0f s", FLUSH_EVERY_S)
            await asyncio.sleep(FLUSH_EVERY_S)
