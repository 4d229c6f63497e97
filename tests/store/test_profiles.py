"""Reader profiles in the store (issue 27's first step): each profile's selection, manual translations
and glossary are its own, machine translations are everyone's, and revoking a profile deletes what it
kept; on SQLite and PostgreSQL."""

from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from core.profile_keys import key_digest, new_key
from core.slots import ModelSlots, chosen
from service.store import (
    DEFAULT_PROFILE,
    GlossaryRow,
    ManualTranslationRow,
    ProfileRow,
    Selection,
    SelectionRow,
    Store,
)
from tests.support.stored import TSL


def test_a_profile_is_found_by_its_keys_digest_only_and_names_are_unique(database_url):
    store = Store(database_url)
    key = new_key()
    alice = store.create_profile("alice", key_digest(key))
    assert alice.id != DEFAULT_PROFILE and alice.key_sha256 == key_digest(key) and alice.last_used is None
    assert store.profile_with_key(key_digest(key)) == alice
    assert store.profile_with_key(key_digest(new_key())) is None
    assert key not in str(store.profiles())  # only the digest is kept
    with pytest.raises(ValueError, match="alice"):
        store.create_profile("alice", key_digest(new_key()))
    assert [profile.name for profile in store.profiles()] == ["default", "alice"]
    assert store.profiles()[0].key_sha256 is None  # the default profile has no key: the bare paths are its


def test_each_profile_has_its_own_selection_manual_translations_and_glossary(database_url):
    store = Store(database_url)
    alice = store.create_profile("alice", key_digest(new_key())).id
    store.update_selection("en", "es", chosen(tsl="apertium/eng-spa"))
    store.update_selection("ja", "en", chosen(ocr="tesseract/jpn"), profile=alice)
    assert store.selection() == Selection("en", "es", ModelSlots("", "", "apertium/eng-spa"))
    assert store.selection(alice) == Selection("ja", "en", ModelSlots("", "tesseract/jpn", ""))

    store.save_translations({"hello": "hola"}, TSL)  # a machine translation: everyone's
    store.set_manual_translation("hello", "en", "es", "¡buenas!", profile=alice)
    assert store.find_translations(["hello"], TSL, True, alice) == {"hello": "¡buenas!"}
    assert store.find_translations(["hello"], TSL, True) == {"hello": "hola"}
    assert store.translations_of("hello", "en", "es", alice)[0] == ("manual", "¡buenas!")
    assert store.translations_of("hello", "en", "es") == [("tsl", "hola")]

    store.set_glossary_term("en", "es", "Naruto", "Naruto-kun", profile=alice)
    assert store.glossary("en", "es", alice).as_dict() == {"Naruto": "Naruto-kun"}
    assert store.glossary("en", "es").as_dict() == {}
    assert not store.delete_glossary_term("en", "es", "Naruto")  # not the default profile's to delete
    assert store.counts() == {"images": 0, "machine translations": 1, "manual translations": 1, "glossary terms": 1}


def test_revoking_a_profile_deletes_what_it_kept_and_nothing_shared(database_url):
    store = Store(database_url)
    alice, bob = (store.create_profile(name, key_digest(new_key())).id for name in ("alice", "bob"))
    for profile in (alice, bob):
        store.update_selection("en", "es", profile=profile)
        store.set_manual_translation("hello", "en", "es", f"hola {profile}", profile=profile)
        store.set_glossary_term("en", "es", "Naruto", f"N{profile}", profile=profile)
    store.save_translations({"hello": "hola"}, TSL)
    assert store.revoke_profile("alice") and not store.revoke_profile("alice")
    assert not store.revoke_profile("default")  # the bare paths' profile stays
    assert [p.name for p in store.profiles()] == ["default", "bob"]
    with store._session() as session:
        for row in (SelectionRow, ManualTranslationRow, GlossaryRow):
            assert session.scalar(select(func.count()).select_from(row).where(row.profile_id == alice)) == 0
    assert store.find_translations(["hello"], TSL, True, bob) == {"hello": f"hola {bob}"}
    assert store.find_translations(["hello"], TSL, False) == {"hello": "hola"}
    assert store.integrity_problems() == []


def test_profiles_unused_for_long_expire_and_a_use_keeps_one(database_url):
    store = Store(database_url)
    old, used, new = (store.create_profile(name, key_digest(new_key())).id for name in ("old", "used", "new"))
    with store._session() as session:  # made 40 days ago by the database's clock
        session.execute(update(ProfileRow).where(ProfileRow.id.in_([old, used]))
                        .values(created=store._database_now(session) - timedelta(days=40)))
    store.touch_profiles([used, used])
    assert store.profile_with_key(store.profiles()[2].key_sha256).last_used is not None
    assert store.expire_profiles(timedelta(days=30)) == ["old"]
    assert [p.name for p in store.profiles()] == ["default", "used", "new"]


def test_a_pruned_store_keeps_the_texts_of_every_profiles_manual_translations(database_url):
    store = Store(database_url)
    alice = store.create_profile("alice", key_digest(new_key())).id
    store.set_manual_translation("kept", "en", "es", "guardado", profile=alice)
    assert store.prune(max_age=timedelta(0))["texts"] == 0
    assert store.find_manual_translations(["kept"], "en", "es", alice) == {"kept": "guardado"}


def test_the_operators_command_makes_lists_and_revokes_profiles(tmp_path, capsys):
    from service.profiles import Profiles, main

    database = f"sqlite:///{tmp_path}/store.sqlite3"
    assert main(["--database", database, "create", "--name", "alice", "--server", "http://books.lan:4000/"]) == 0
    address = capsys.readouterr().out.strip().splitlines()[-1]
    assert address.startswith("http://books.lan:4000/r/")
    key = address.removeprefix("http://books.lan:4000/r/")
    store = Store(database)
    assert Profiles(store).find(key).profile == store.profiles()[1].id
    assert main(["--database", database, "create", "--name", "alice"]) == 1  # names are unique
    assert main(["--database", database, "list"]) == 0
    listed = capsys.readouterr().out
    assert "default\t" in listed and "alice\t" in listed and key not in listed
    assert main(["--database", database, "revoke", "alice"]) == 0
    assert Profiles(store).find(key) is None
    assert main(["--database", database, "revoke", "alice"]) == 1


def test_a_revocation_reaches_every_replica_within_the_stated_bound(database_url):
    from service.profiles import REMEMBER_S, Profiles

    now = [0.0]
    store = Store(database_url)
    replica, elsewhere = Profiles(store, clock=lambda: now[0]), Profiles(Store(database_url))
    profile, key = elsewhere.create("alice")
    assert replica.find(key).profile == profile.id
    assert elsewhere.revoke("alice")
    now[0] = REMEMBER_S - 0.1
    assert replica.find(key) is not None  # remembered on this replica for a while
    now[0] = REMEMBER_S + 0.1
    assert replica.find(key) is None
    assert store.profiles()[-1].name == "default"


def test_a_replica_remembers_a_checked_key_for_its_bound_exactly_and_names_the_reader_by_short_id(database_url):
    from core.profile_keys import short_id
    from service.profiles import REMEMBER_S, Profiles

    now = [1000.0]
    store = Store(database_url)
    replica = Profiles(store, clock=lambda: now[0])
    profile, key = replica.create("alice")
    reader = replica.find(key)
    assert (reader.profile, reader.short_id) == (profile.id, short_id(key_digest(key)))
    assert store.revoke_profile("alice")  # by another replica: this one does not know yet
    now[0] += REMEMBER_S - 0.1
    assert replica.find(key) == reader
    now[0] = 1000.0 + REMEMBER_S  # the bound itself: looked up again
    assert replica.find(key) is None


def test_a_profiles_name_has_1_to_100_characters(database_url):
    from service.profiles import Profiles

    profiles = Profiles(Store(database_url))
    for name in ("", "   ", "x" * 101):
        with pytest.raises(ValueError) as refused:
            profiles.create(name)
        assert str(refused.value) == "A profile's name has 1 to 100 characters."
    assert profiles.create(" " + "x" * 100 + " ")[0].name == "x" * 100  # trimmed first


def test_the_default_profile_never_expires(database_url):
    store = Store(database_url)
    store.create_profile("old", key_digest(new_key()))
    with store._session() as session:  # every profile made 40 days ago by the database's clock
        session.execute(update(ProfileRow).values(created=store._database_now(session) - timedelta(days=40)))
    assert store.expire_profiles(timedelta(days=30)) == ["old"]
    assert [profile.name for profile in store.profiles()] == ["default"]


def test_the_operators_command_says_what_went_wrong_and_defaults_to_this_machines_address(tmp_path, capsys):
    from service.profiles import Profiles, main

    database = ["--database", f"sqlite:///{tmp_path}/store.sqlite3"]
    for argv in ([], ["create"]):  # no command, no name: the parser's usage error, nothing done
        with pytest.raises(SystemExit) as stopped:
            main([*database, *argv])
        assert stopped.value.code == 2
    capsys.readouterr()
    assert main([*database, "create", "--name", " "]) == 1
    assert capsys.readouterr().out == "A profile's name has 1 to 100 characters.\n"
    assert main([*database, "create", "--name", "bob"]) == main([*database, "create", "--name", "carl"]) == 0
    address = capsys.readouterr().out.splitlines()[1]
    assert address.startswith("http://127.0.0.1:4000/r/")
    Profiles(Store(database[1])).find(address.removeprefix("http://127.0.0.1:4000/r/"))  # bob's key used
    assert main([*database, "list"]) == 0
    listed = {line.split("\t")[0]: line for line in capsys.readouterr().out.splitlines()}
    assert listed["carl"].endswith("\tlast used never") and not listed["bob"].endswith("never")
    assert main([*database, "revoke", "carol"]) == 1
    assert capsys.readouterr().out == "No profile named 'carol' (the default profile cannot be revoked).\n"
    assert main([*database, "revoke", "bob"]) == 0
    assert capsys.readouterr().out == "Profile 'bob' revoked: its address answers 404, its settings are gone.\n"


def _used_days_ago(store: Store, name: str, days: float) -> None:
    """Move a profile's last use back by the database's clock (the replica's clock plays no part in expiry)."""
    with store._session() as session:
        session.execute(update(ProfileRow).where(ProfileRow.name == name)
                        .values(last_used=store._database_now(session) - timedelta(days=days)))


def test_the_periodic_retention_expires_profiles_unused_for_their_days_naming_them_never_their_keys(
        tmp_path, caplog):
    import asyncio
    import logging

    from core.settings import RetentionSettings
    from service.profiles import Profiles
    from service.retention import Retention

    caplog.set_level(logging.INFO, logger="service.retention")
    store = Store(f"sqlite:///{tmp_path}/store.sqlite3")
    keys = [Profiles(store).create(name)[1] for name in ("gone", "kept")]
    _used_days_ago(store, "gone", 31)
    _used_days_ago(store, "kept", 29)

    async def one_round() -> None:
        task = asyncio.create_task(Retention(store, RetentionSettings()).run(profiles_unused_days=30))
        while len(store.profiles()) == 3:
            await asyncio.sleep(0.01)
        task.cancel()

    asyncio.run(asyncio.wait_for(one_round(), 30))
    assert [profile.name for profile in store.profiles()] == ["default", "kept"]
    assert "retention: 1 reader profiles unused for 30 days expired: gone" in caplog.messages
    assert not any(key in message for key in keys for message in caplog.messages)
    assert Retention(store, RetentionSettings()).expire_profiles(None) == []  # profiles.expire_after_days: None


def test_the_prune_command_expires_profiles_only_when_asked(tmp_path, capsys):
    from service.store import main

    url = f"sqlite:///{tmp_path}/store.sqlite3"
    store = Store(url)
    for name in ("gone", "kept"):
        store.create_profile(name, key_digest(new_key()))
    _used_days_ago(store, "gone", 10)
    assert main(["prune", url]) == 0
    assert capsys.readouterr().out == f"pruned {url}: 0 images, 0 translations, 0 texts\n"
    assert main(["prune", "--profiles-unused-days", "7.5", url]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == ["expired 1 reader profiles unused for 7.5 days", "  gone"]
    assert [profile.name for profile in store.profiles()] == ["default", "kept"]
