"""Reader profiles: many readers on one server, each under `/r/<key>/` with their own languages, models,
manual translations and glossary, while what the models compute is shared (the store keeps both).

The key is the reader's credential: whoever has the address changes that profile's settings without
the API token, and nothing else. The operator creates, lists and revokes profiles (with the token over
HTTP, or `python -m service.profiles` on the server's machine). An ingress replica remembers a key it
found for `REMEMBER_S` seconds, so a revocation holds on every replica within that bound.
"""

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError

from core.answers import (
    PROFILE_FORMAT,
    PROFILE_VERSION,
    PROFILE_VERSIONS,
    ExportedManualTranslation,
    ExportedModelChoice,
    ExportedSelection,
    ExportedTerm,
    ProfileDocument,
    selection_answer,
)
from core.errors import Forbidden, ServeError
from core.profile_keys import could_be_key, key_digest, new_key, same_digest, short_id
from core.settings import ProfileSettings

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
        """A new profile and its key: the only time the key is shown (the store keeps its digest). It starts
        with the default profile's languages and models, so its reader reads at once, then chooses."""
        name = name.strip()
        if not name or len(name) > 100:
            raise ValueError("A profile's name has 1 to 100 characters.")
        key = new_key()
        profile = self.store.create_profile(name, key_digest(key))
        start = self.store.selection()
        self.store.update_selection(start.lang_src, start.lang_dst, start.models, profile=profile.id)
        return profile, key

    def export(self, name: str) -> ProfileDocument | None:
        """The profile's selection, the models it chose per language, manual translations and glossary, as one
        transaction saw them, to make a profile of elsewhere (`import_document`); never its key. None: no
        profile has this name."""
        with self.store.transaction():
            profile = self.store.profile_named(name)
            if profile is None:
                return None
            chosen = self.store.selection(profile.id)
            choices = self.store.model_choices(profile.id)
            manual = self.store.manual_translations(profile.id)
            terms = self.store.glossary_terms(profile.id)
        return ProfileDocument(
            format=PROFILE_FORMAT, version=PROFILE_VERSION, name=profile.name,
            exported=datetime.now(UTC).isoformat(timespec="seconds"),
            selection=ExportedSelection(**selection_answer(chosen.lang_src, chosen.lang_dst, chosen.models)),
            model_choices=[ExportedModelChoice(**row) for row in choices],
            manual_translations=[ExportedManualTranslation(**row) for row in manual],
            glossary=[ExportedTerm(**row) for row in terms])

    def import_document(self, document: ProfileDocument, name: str,
                        caps: ProfileSettings) -> tuple[Profile, str]:
        """A new profile named `name`, with a new key, holding the document's selection, model choices, manual
        translations and glossary: in one transaction, so a refusal (a taken name, a pair over its glossary's
        most terms) stores nothing. A document over the operator's caps is refused before anything is written;
        one with a malformed entry (a model choice's kind or language codes included) never gets here
        (`read_document`, the HTTP body's validation). The models, the selection's and the choices', are
        stored as named, as the registry is not asked: `set_lang` selects a chosen model again only where the
        profile may use it then, else the server's default for the languages."""
        _check_caps(document, caps)
        with self.store.transaction():
            profile, key = self.create(name)
            chosen = document.selection
            self.store.update_selection(chosen.lang_src, chosen.lang_dst, chosen.models, profile.id)
            for choice in document.model_choices:
                self.store.set_model_choice(choice.kind, choice.lang_src, choice.lang_dst, choice.model, profile.id)
            for entry in document.manual_translations:
                self.store.set_manual_translation(entry.text, entry.lang_src, entry.lang_dst, entry.translation,
                                                  profile.id)
            for entry in document.glossary:
                self.store.set_glossary_term(entry.lang_src, entry.lang_dst, entry.term, entry.translation,
                                             profile.id)
        return profile, key

    def revoke(self, name: str) -> bool:
        """Delete the profile; this replica forgets every key at once (others within `REMEMBER_S`)."""
        with self._lock:
            self._known.clear()
        return self.store.revoke_profile(name)


def _check_caps(document: ProfileDocument, caps: ProfileSettings) -> None:
    """An imported profile is a reader's like any other: it may not start above what the operator lets
    one keep (`profiles.max_manual_translations`, `profiles.max_glossary_terms`)."""
    for held, cap, what, setting in ((len(document.manual_translations), caps.max_manual_translations,
                                      "manual translations", "max_manual_translations"),
                                     (len(document.glossary), caps.max_glossary_terms, "glossary terms",
                                      "max_glossary_terms")):
        if held > cap:
            raise Forbidden(f"The profile holds {held} {what}, more than the server's operator lets one keep "
                            f"(profiles.{setting}: {cap}): nothing was imported.")


def read_document(text: str | bytes) -> ProfileDocument:
    """A profile export read back, or a ValueError saying in a sentence why this is not one this server reads
    (another file, a corrupt one, another version of the format)."""
    try:
        return ProfileDocument.model_validate_json(text)
    except ValidationError as exc:
        problems = exc.errors(include_url=False)
        if problems[0]["loc"] in ((), ("format",)):  # not JSON, not an object, another program's file
            found = f"its 'format' is not {PROFILE_FORMAT!r}" if problems[0]["loc"] else problems[0]["msg"]
            raise ValueError(f"Not a reader profile's export ({found}): nothing was imported.") from None
        shown = "; ".join(f"{'.'.join(map(str, problem['loc']))}: {problem['msg']}" for problem in problems[:3])
        more = f" and {len(problems) - 3} more" if len(problems) > 3 else ""
        versions = " or ".join(map(str, PROFILE_VERSIONS))
        raise ValueError(f"Not a reader profile this server can import (version {versions} of its "
                         f"format): {shown}{more}. Nothing was imported.") from None


def reader_address(server: str, key: str) -> str:
    """What the reader pastes as the extension's server address."""
    return f"{server.rstrip('/')}/r/{key}"


def _export(profiles: Profiles, name: str, out: Path | None) -> int:
    """The operator's `export`: the document to `out` (or standard output), and what it holds."""
    document = profiles.export(name)
    if document is None:
        print(f"No profile named {name!r}.", file=sys.stderr)
        return 1
    text = document.model_dump_json(indent=2) + "\n"
    if out is None:
        sys.stdout.write(text)
        return 0
    out.write_text(text, encoding="utf-8")
    print(f"Profile {name!r} exported to {out}: its selection, {len(document.model_choices)} model choices, "
          f"{len(document.manual_translations)} manual translations and {len(document.glossary)} glossary terms "
          f"(not its key).")
    return 0


def main(argv: list[str] | None = None) -> int:
    import argparse

    from core.settings import AppArgs

    parser = argparse.ArgumentParser(prog="python -m service.profiles",
                                     description="Reader profiles: each reader's own address on this server.")
    parser.add_argument("--database", help="the store's URL (default: the server's, from the environment)")
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="make a profile and print the address to paste into the extension")
    commands.add_parser("list", help="every profile, with when it was made and last used")
    revoke = commands.add_parser("revoke", help="delete a profile and everything it kept")
    revoke.add_argument("name")
    export = commands.add_parser("export", help="write a profile's settings, model choices, manual translations "
                                                "and glossary (never its key) as JSON, for `import`")
    export.add_argument("name")
    export.add_argument("--out", type=Path, help="the file to write (default: standard output)")
    imported = commands.add_parser("import", help="make a new profile, with a new key, from an export")
    imported.add_argument("file", type=Path)
    for making in (create, imported):
        making.add_argument("--name", required=True, help="the new profile's name (a name in use is refused)")
        making.add_argument("--server", default="http://127.0.0.1:4000", help="the address readers reach the server at")
    options = parser.parse_args(argv)
    args = AppArgs()
    store = Store(options.database or args.resolved_database_url)
    profiles = Profiles(store)
    try:
        if options.command in ("create", "import"):
            try:
                profile, key = (profiles.create(options.name) if options.command == "create" else
                                profiles.import_document(read_document(options.file.read_bytes()), options.name,
                                                         args.profiles))
            except (ValueError, OSError, ServeError) as exc:
                print(getattr(exc, "message", exc))
                return 1
            print(f"Profile {profile.name!r} made. Its address, to paste as the extension's server (keep it secret: "
                  f"whoever has it reads and changes this profile):\n{reader_address(options.server, key)}")
        elif options.command == "export":
            return _export(profiles, options.name, options.out)
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
