"""The store's size kept in check: which images requests use is remembered in memory and written in
batches (never on a request's path), and the retention policy prunes on a schedule, expiring the reader
profiles unused for `profiles.expire_after_days` with it."""

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

    def expire_profiles(self, unused_days: float | None) -> list[str]:
        """Revoke the reader profiles unused for `unused_days` (None: keep them), so that forgotten addresses
        stop being credentials; their names (the log may name them, never their keys)."""
        if unused_days is None:
            return []
        expired = self.store.expire_profiles(timedelta(days=unused_days))
        if expired:
            log.info("retention: %d reader profiles unused for %g days expired: %s", len(expired), unused_days,
                     ", ".join(expired))
        return expired

    async def run(self, profiles_unused_days: float | None = None) -> None:
        """Flush every half minute, and every `prune_every_s` prune and expire the profiles unused for
        `profiles_unused_days`, for the life of the replica."""
        next_prune = time.monotonic()
        while True:
            try:
                await in_thread(self.flush)
                if time.monotonic() >= next_prune:
                    next_prune = time.monotonic() + self.settings.prune_every_s
                    await in_thread(self.prune)
                    await in_thread(self.expire_profiles, profiles_unused_days)
            except Exception:  # the store may be briefly unreachable: try again next round
                log.exception("store maintenance failed; trying again in %.0f s", FLUSH_EVERY_S)
            await asyncio.sleep(FLUSH_EVERY_S)
