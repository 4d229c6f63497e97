"""Reader profiles: many readers on one server, each under `/r/<key>/` with their own languages, models,
manual translations and glossary, while what the models compute is shared (the store keeps both).

The key is the reader's credential: whoever has the address changes that profile's settings without
the API token, and nothing else. The operator creates, lists and revokes profiles (with the token over
HTTP, or `python -m service.profiles` on the server's machine). An ingress replica remembers a key it
found for `REMEMBER_S` seconds, so a revocation holds on every replica within that bound.
"""

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from core.profile_keys import could_be_key, key_digest, new_key, same_digest, short_id

from .store import Profile, Store

REMEMBER_S = 10.0
"""How long a replica trusts a key it looked up: the bound on a revocation reaching every replica."""
_NO_KEY = key_digest("not a key")


@dataclass(frozen=True)
class Reader:
    """The profile a request is for, as the handlers see it."""

    profile: int
    short_id: str


class Profiles:
    def __init__(self, store: Store, clock: Callable[[], float] = time.monotonic):
        self.store = store
        self._clock = clock
        self._lock = threading.Lock()
        self._known: dict[str, tuple[float, Reader]] = {}

    def find(self, key: str) -> Reader | None:
        """The profile whose key this is, or None (unknown, revoked or malformed: the same answer, after
        the same lookup)."""
        digest = key_digest(key) if could_be_key(key) else _NO_KEY
        now = self._clock()
        with self._lock:
            remembered = self._known.get(digest)
        if remembered and now - remembered[0] < REMEMBER_S:
            return remembered[1]
        found = self.store.profile_with_key(digest)
        if found is None or found.key_sha256 is None or not same_digest(found.key_sha256, digest):
            with self._lock:
                self._known.pop(digest, None)
            return None
        reader = Reader(found.id, short_id(digest))
        self.store.touch_profiles([found.id])  # once per REMEMBER_S and replica: for expiry, and the operator's list
        with self._lock:
            self._known[digest] = (now, reader)
        return reader

    def create(self, name: str) -> tuple[Profile, str]:
        """A new profile and its key: the only time the key is shown (the store keeps its digest)."""
        name = name.strip()
        if not name or len(name) > 100:
            raise ValueError("A profile's name has 1 to 100 characters.")
        key = new_key()
        return self.store.create_profile(name, key_digest(key)), key

    def revoke(self, name: str) -> bool:
        """Delete the profile; this replica forgets every key at once (others within `REMEMBER_S`)."""
        with self._lock:
            self._known.clear()
        return self.store.revoke_profile(name)


def reader_address(server: str, key: str) -> str:
    """What the reader pastes as the extension's server address."""
    return f"{server.rstrip('/')}/r/{key}"


def main(argv: list[str] | None = None) -> int:
    import argparse

    from core.settings import AppArgs

    parser = argparse.ArgumentParser(prog="python -m service.profiles",
                                     description="Reader profiles: each reader's own address on this server.")
    parser.add_argument("--database", help="the store's URL (default: the server's, from the environment)")
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="make a profile and print the address to paste into the extension")
    create.add_argument("--name", required=True)
    create.add_argument("--server", default="http://127.0.0.1:4000", help="the address readers reach the server at")
    commands.add_parser("list", help="every profile, with when it was made and last used")
    revoke = commands.add_parser("revoke", help="delete a profile and everything it kept")
    revoke.add_argument("name")
    options = parser.parse_args(argv)
    store = Store(options.database or AppArgs().resolved_database_url)
    profiles = Profiles(store)
    try:
        if options.command == "create":
            try:
                profile, key = profiles.create(options.name)
            except ValueError as exc:
                print(exc)
                return 1
            print(f"Profile {profile.name!r} made. Its address, to paste as the extension's server (keep it secret: "
                  f"whoever has it reads and changes this profile):\n{reader_address(options.server, key)}")
        elif options.command == "list":
            for profile in store.profiles():
                used = profile.last_used.isoformat(timespec="seconds") if profile.last_used else "never"
                print(f"{profile.name}\tmade {profile.created.isoformat(timespec='seconds')}\tlast used {used}")
        elif not profiles.revoke(options.name):
            print(f"No profile named {options.name!r} (the default profile cannot be revoked).")
            return 1
        else:
            print(f"Profile {options.name!r} revoked: its address answers 404, its settings are gone.")
        return 0
    finally:
        store.close()


if __name__ == "__main__":
    raise SystemExit(main())
