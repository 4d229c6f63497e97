"""A reader profile's export and import (issue 27): the operator's command carries a profile's selection,
the models it chose per language, manual translations and glossary into a fresh store under a new name and
a new key, never the old key; a foreign, corrupt or oversized document, a taken name, or a refusal half way
stores nothing. On SQLite and PostgreSQL."""

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from core import glossary
from core.errors import Forbidden, PayloadTooLarge
from core.settings import ProfileSettings
from core.slots import ModelSlots, chosen
from service.profiles import Profiles, main, read_document
from service.store import ModelChoiceRow, ProfileRow, Store, TextRow
from tests.support.services import FakeStages, in_process_service

MODELS = chosen(box="easyocr/craft", ocr="tesseract/eng", tsl="apertium/eng-spa")
JA_CHOSEN = chosen(box="rapidocr/ppocr-v4-det", ocr="tesseract/jpn_vert", tsl="my/ja-en")


@pytest.fixture
def fresh_url(database_url, request, tmp_path) -> str:
    """A second empty database of the same kind: where an export is imported."""
    if database_url.startswith("sqlite"):
        return f"sqlite:///{tmp_path}/fresh.sqlite3"
    return request.getfixturevalue("postgres").new_database()


def _alice(store: Store) -> str:
    """A profile with models chosen for ja->en, a selection, manual translations in two pairs and glossary
    terms in two pairs; its key."""
    profile, key = Profiles(store).create("alice")
    store.update_selection("ja", "en", profile=profile.id)
    store.choose_models(JA_CHOSEN, profile.id)
    store.update_selection("en", "es", MODELS, profile.id)
    store.set_manual_translation("Hello there", "en", "es", "¡Hola, tú!", profile.id)
    store.set_manual_translation("Good night", "en", "es", "Buenas noches", profile.id)
    store.set_manual_translation("こんにちは", "ja", "en", "Hi", profile.id)
    store.set_glossary_term("en", "es", "Naruto", "Naruto-kun", profile.id)
    store.set_glossary_term("ja", "en", "木ノ葉", "Konoha", profile.id)
    return key


def _contents(store: Store, name: str) -> tuple:
    profile = store.profile_named(name)
    return (store.selection(profile.id), store.manual_translations(profile.id), store.glossary_terms(profile.id),
            store.model_choices(profile.id))


def _rows(store: Store, table=TextRow) -> int:
    with store._session() as session:
        return session.scalar(select(func.count()).select_from(table))


def _texts(store: Store) -> int:
    return _rows(store, TextRow)


def test_an_export_imported_into_a_fresh_store_is_the_same_profile_under_a_new_key(
        database_url, fresh_url, tmp_path, capsys):
    source = Store(database_url)
    key = _alice(source)
    exported = tmp_path / "alice.json"
    assert main(["--database", database_url, "export", "alice", "--out", str(exported)]) == 0
    assert capsys.readouterr().out == (f"Profile 'alice' exported to {exported}: its selection, 3 model choices, "
                                       f"3 manual translations and 2 glossary terms (not its key).\n")
    text = exported.read_text(encoding="utf-8")
    digest = source.profile_named("alice").key_sha256
    assert key not in text and digest not in text  # never the credential
    document = json.loads(text)
    assert (document["format"], document["version"], document["name"]) == ("ocr-translate-serve profile", 2, "alice")
    assert document["model_choices"] == [
        {"kind": "box", "lang_src": "ja", "lang_dst": "", "model": "rapidocr/ppocr-v4-det"},
        {"kind": "ocr", "lang_src": "ja", "lang_dst": "", "model": "tesseract/jpn_vert"},
        {"kind": "tsl", "lang_src": "ja", "lang_dst": "en", "model": "my/ja-en"}]

    assert main(["--database", fresh_url, "import", str(exported), "--name", "bea",
                 "--server", "http://books.lan:4000"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("Profile 'bea' made.") and printed[1].startswith("http://books.lan:4000/r/")
    fresh = Store(fresh_url)
    assert _contents(fresh, "bea") == _contents(source, "alice")
    assert _contents(fresh, "bea")[0].models == MODELS and len(_contents(fresh, "bea")[1]) == 3
    assert fresh.own_choices("ja", "en", fresh.profile_named("bea").id) == JA_CHOSEN
    new_key = printed[1].removeprefix("http://books.lan:4000/r/")
    assert new_key != key and Profiles(fresh).find(key) is None
    bea = Profiles(fresh).find(new_key).profile
    assert fresh.find_manual_translations(["Hello there"], "en", "es", bea) == {"Hello there": "¡Hola, tú!"}
    assert fresh.glossary("ja", "en", bea).as_dict() == {"木ノ葉": "Konoha"}

    # the same export into the store it came from: another profile beside alice, alice untouched
    assert main(["--database", database_url, "import", str(exported), "--name", "alice"]) == 1
    assert capsys.readouterr().out == "a profile named 'alice' exists already\n"
    assert main(["--database", database_url, "import", str(exported), "--name", "alice-2"]) == 0
    assert _contents(source, "alice-2") == _contents(source, "alice")
    assert source.profile_named("alice").key_sha256 == digest


def test_the_default_profile_exports_to_standard_output_and_an_unknown_name_is_refused(tmp_path, capsys):
    database = f"sqlite:///{tmp_path}/store.sqlite3"
    Store(database).update_selection("en", "es", MODELS)
    assert main(["--database", database, "export", "default"]) == 0
    document = read_document(capsys.readouterr().out)
    assert (document.name, document.selection.lang_src, document.selection.models) == ("default", "en", MODELS)
    assert main(["--database", database, "export", "nobody"]) == 1
    assert capsys.readouterr().err == "No profile named 'nobody'.\n"


@pytest.mark.parametrize(("content", "said"), [
    ("not json at all", "Not a reader profile's export (Invalid JSON"),
    ('["a", "list"]', "Not a reader profile's export (Input should be an object)"),
    ('{"name": "alice", "settings": {}}', "Not a reader profile's export (its 'format' is not "),
    ('{"format": "ocr-translate-serve profile", "version": 3}', "version: Input should be 1 or 2"),
])
def test_a_foreign_or_newer_file_is_refused_and_stores_nothing(tmp_path, capsys, content, said):
    database = f"sqlite:///{tmp_path}/store.sqlite3"
    (tmp_path / "file.json").write_text(content)
    assert main(["--database", database, "import", str(tmp_path / "file.json"), "--name", "bob"]) == 1
    out = capsys.readouterr().out
    assert out.startswith(said) or said in out
    assert "nothing was imported" in out.lower()
    assert [profile.name for profile in Store(database).profiles()] == ["default"]


def _exported(database_url: str) -> dict:
    store = Store(database_url)
    _alice(store)
    return Profiles(store).export("alice").model_dump()


@pytest.mark.parametrize(("where", "value", "said"), [
    (("glossary", 1, "lang_src"), "xx", "glossary.1.lang_src: an ISO 639-1 language code (not 'xx')"),
    (("glossary", 0, "term"), "", "glossary.0.term: String should have at least 1 character"),
    (("manual_translations", 2, "text"), 7, "manual_translations.2.text: Input should be a valid string"),
    (("selection", "lang_dst"), "auto", "selection.lang_dst: an ISO 639-1 language code (not 'auto')"),
    (("selection", "key"), "secret", "selection.key: Extra inputs are not permitted"),
    (("model_choices", 0, "kind"), "det", "model_choices.0.kind: Input should be 'box', 'ocr' or 'tsl'"),
    (("model_choices", 1, "lang_src"), "xx", "model_choices.1.lang_src: an ISO 639-1 language code (not 'xx')"),
    (("model_choices", 2, "lang_dst"), "auto", "model_choices.2.lang_dst: an ISO 639-1 language code (not 'auto')"),
    (("model_choices", 1, "lang_dst"), "en",
     "model_choices.1.lang_dst: '' for a box or OCR model, chosen for the source language alone (not 'en')"),
    (("model_choices", 2, "model"), "", "model_choices.2.model: String should have at least 1 character"),
    (("model_choices", 0, "model"), None, "model_choices.0.model: Input should be a valid string"),
    (("model_choices", 0, "profile"), 1, "model_choices.0.profile: Extra inputs are not permitted"),
])
def test_a_corrupt_document_is_refused_whole(tmp_path, capsys, where, value, said):
    database = f"sqlite:///{tmp_path}/store.sqlite3"
    document = _exported(database)
    *path, last = where
    part = document
    for step in path:
        part = part[step]
    part[last] = value
    (tmp_path / "corrupt.json").write_text(json.dumps(document))
    before = _texts(Store(database))
    assert main(["--database", database, "import", str(tmp_path / "corrupt.json"), "--name", "bob"]) == 1
    assert said in capsys.readouterr().out
    assert Store(database).profile_named("bob") is None and _texts(Store(database)) == before
    assert _rows(Store(database), ModelChoiceRow) == 3  # alice's only


def test_a_document_with_many_problems_names_the_first_three_and_counts_the_others(tmp_path):
    document = _exported(f"sqlite:///{tmp_path}/store.sqlite3")
    document["selection"]["lang_dst"] = "auto"
    document["manual_translations"][2]["text"] = 7
    document["glossary"][0]["term"] = ""
    with pytest.raises(ValueError) as three:
        read_document(json.dumps(document))
    document["glossary"][1]["lang_src"] = "xx"
    with pytest.raises(ValueError) as four:
        read_document(json.dumps(document))
    said = ("Not a reader profile this server can import (version 1 or 2 of its format): selection.lang_dst: an ISO "
            "639-1 language code (not 'auto'); manual_translations.2.text: Input should be a valid string; "
            "glossary.0.term: String should have at least 1 character")
    assert str(three.value) == f"{said}. Nothing was imported."
    assert str(four.value) == f"{said} and 1 more. Nothing was imported."


def test_an_export_lists_manual_translations_and_terms_by_language_pair_then_text(tmp_path):
    """Whatever order they were added in: two exports of the same profile are the same file."""
    store = Store(f"sqlite:///{tmp_path}/store.sqlite3")
    profile, _ = Profiles(store).create("carla")
    added = [("Zebra", "ja", "en"), ("Zebra", "en", "es"), ("Apple", "en", "es"), ("Mango", "de", "es"),
             ("Banana", "en", "de")]
    for text, src, dst in added:
        store.set_manual_translation(text, src, dst, text.upper(), profile.id)
        store.set_glossary_term(src, dst, text, text.lower(), profile.id)
    in_order = sorted(added, key=lambda item: (item[1], item[2], item[0]))
    manual, terms = store.manual_translations(profile.id), store.glossary_terms(profile.id)
    assert [(row["text"], row["lang_src"], row["lang_dst"]) for row in manual] == in_order
    assert [(row["term"], row["lang_src"], row["lang_dst"]) for row in terms] == in_order


def test_an_export_says_when_it_was_made_in_utc(tmp_path):
    store = Store(f"sqlite:///{tmp_path}/store.sqlite3")
    _alice(store)
    before = datetime.now(UTC).replace(microsecond=0)
    made = datetime.fromisoformat(Profiles(store).export("alice").exported)
    assert made.utcoffset() == timedelta(0) and before <= made <= datetime.now(UTC)


def test_a_refusal_half_way_through_an_import_stores_nothing(database_url):
    """The profile, its selection and manual translations are written before the glossary, whose pair is
    over its most terms: the transaction takes all of it back, the texts included."""
    store = Store(database_url)
    document = read_document(json.dumps({
        "format": "ocr-translate-serve profile", "version": 2, "name": "alice", "exported": "2026-12-06T10:00:00Z",
        "selection": {"lang_src": "en", "lang_dst": "es", "tsl_model": "apertium/eng-spa"},
        "model_choices": [{"kind": "ocr", "lang_src": "ja", "lang_dst": "", "model": "tesseract/jpn_vert"}],
        "manual_translations": [{"lang_src": "en", "lang_dst": "es", "text": "Only here", "translation": "Solo aquí"}],
        "glossary": [{"lang_src": "en", "lang_dst": "es", "term": f"term {n}", "translation": f"término {n}"}
                     for n in range(glossary.MAX_TERMS + 1)]}))
    with pytest.raises(PayloadTooLarge):
        Profiles(store).import_document(document, "bob", ProfileSettings())
    assert store.profile_named("bob") is None and not store.knows_text("Only here")
    with store._session() as session:
        assert session.scalar(select(func.count()).select_from(ProfileRow)) == 1
    assert _rows(store, ModelChoiceRow) == 0
    assert store.counts() == {"images": 0, "machine translations": 0, "manual translations": 0, "glossary terms": 0}


def test_a_document_over_the_operators_caps_is_refused(tmp_path):
    database = f"sqlite:///{tmp_path}/store.sqlite3"
    document = read_document(json.dumps(_exported(database)))
    profiles = Profiles(Store(database))
    for caps, said in ((ProfileSettings(max_manual_translations=2), "3 manual translations, more than the "
                        "server's operator lets one keep (profiles.max_manual_translations: 2)"),
                       (ProfileSettings(max_glossary_terms=1), "2 glossary terms, more than the server's operator "
                        "lets one keep (profiles.max_glossary_terms: 1)")):
        with pytest.raises(Forbidden, match=r"nothing was imported") as refused:
            profiles.import_document(document, "bob", caps)
        assert said in refused.value.message
    assert profiles.store.profile_named("bob") is None
    assert profiles.import_document(document, "bob", ProfileSettings(max_manual_translations=3,
                                                                     max_glossary_terms=2))[0].name == "bob"


def _set_lang(service, src: str, dst: str, profile: int) -> ModelSlots[str]:
    asyncio.run(service.catalogue.set_lang(src, dst, profile))
    return service.store.selection(profile).models


def test_the_models_a_reader_chose_per_language_come_back_with_the_language_in_the_imported_profile(database_url):
    """Chosen through the service for Japanese, then French: the import selects French's, as exported, and
    Japanese's again when its reader goes back to Japanese (not the server's defaults for it)."""
    service = in_process_service(database_url, FakeStages())
    profiles = Profiles(service.store)
    alice = profiles.create("alice")[0].id
    ja = chosen(box="rapidocr/ppocr-v4-det", ocr="tesseract/jpn_vert")
    fr = chosen(box="rapidocr/ppocr-v4-det", ocr="tesseract/fra")
    for (src, dst), models in ((("ja", "en"), ja), (("fr", "en"), fr), (("en", "ca"), chosen(tsl="original"))):
        _set_lang(service, src, dst, alice)
        asyncio.run(service.catalogue.set_models(models, alice))
    document = read_document(profiles.export("alice").model_dump_json())
    assert len(document.model_choices) == 5

    bea = profiles.import_document(document, "bea", ProfileSettings())[0].id
    assert service.store.selection(bea) == service.store.selection(alice)  # en->ca, as exported
    other = profiles.create("other")[0].id  # chose nothing: the server's defaults, which differ
    for profile in (bea, other):
        _set_lang(service, "en", "es", profile)
    for (src, dst), models in ((("ja", "en"), ja), (("fr", "en"), fr), (("en", "ca"), chosen(tsl="original"))):
        own = models.or_(_set_lang(service, src, dst, other))
        assert _set_lang(service, src, dst, other) != own
        assert _set_lang(service, src, dst, bea) == own, (src, dst)
    assert service.store.model_choices(bea) == service.store.model_choices(alice)


def test_a_document_exported_before_model_choices_were_imports_as_a_profile_that_chose_none(database_url):
    """Version 1 of the format has no `model_choices`: it still imports, and set_lang gives the defaults."""
    store = Store(database_url)
    old = {"format": "ocr-translate-serve profile", "version": 1, "name": "alice", "exported": "2026-12-06T10:00:00Z",
           "selection": {"lang_src": "en", "lang_dst": "es", "box_model": "easyocr/craft",
                         "ocr_model": "tesseract/eng", "tsl_model": "apertium/eng-spa"},
           "manual_translations": [{"lang_src": "en", "lang_dst": "es", "text": "Hi", "translation": "Hola"}],
           "glossary": [{"lang_src": "en", "lang_dst": "es", "term": "Naruto", "translation": "Naruto-kun"}]}
    document = read_document(json.dumps(old))
    assert document.model_choices == []
    bob = Profiles(store).import_document(document, "bob", ProfileSettings())[0]
    assert _contents(store, "bob") == (Store(database_url).selection(bob.id), [
        {"lang_src": "en", "lang_dst": "es", "text": "Hi", "translation": "Hola"}], [
        {"lang_src": "en", "lang_dst": "es", "term": "Naruto", "translation": "Naruto-kun"}], [])
    assert store.selection(bob.id).models == MODELS


def test_an_imported_choice_of_a_model_this_server_lacks_is_kept_and_set_lang_passes_it_over(database_url):
    """As the selection's models, the choices are stored as named (the import does not ask the registry):
    set_lang selects the server's default where the chosen model cannot be used here."""
    service = in_process_service(database_url, FakeStages())
    document = read_document(json.dumps({
        "format": "ocr-translate-serve profile", "version": 2, "name": "alice", "exported": "2026-12-06T10:00:00Z",
        "selection": {}, "manual_translations": [], "glossary": [],
        "model_choices": [{"kind": "ocr", "lang_src": "ja", "lang_dst": "", "model": "elsewhere/jpn-ocr"},
                          {"kind": "box", "lang_src": "ja", "lang_dst": "", "model": "rapidocr/ppocr-v4-det"}]}))
    bob = Profiles(service.store).import_document(document, "bob", ProfileSettings())[0].id
    assert service.store.own_choices("ja", "en", bob) == chosen(box="rapidocr/ppocr-v4-det",
                                                                ocr="elsewhere/jpn-ocr").or_(ModelSlots("", "", ""))
    japanese = _set_lang(service, "ja", "en", bob)
    assert japanese.box == "rapidocr/ppocr-v4-det" and japanese.ocr not in ("elsewhere/jpn-ocr", "")
