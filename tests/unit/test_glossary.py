"""The reader's glossary: finding terms, substituting them around a model (and the fallback when the
model loses a placeholder), and the service calls that keep it, in process with a real store."""

import asyncio

import pytest

from core import glossary as glossary_module
from core.errors import BadRequest, NotFound, PayloadTooLarge
from core.glossary import Glossary, restore
from core.options import TSL_OPTIONS, resolve
from inference.translation import TranslationItem, translate_grouped, translate_texts
from service.jobs import Overrides
from tests.support.services import CopiesUnknownWords, FakeStages, in_process_service, select_all

TERMS = Glossary.of({"Naruto": "Naruto-kun", "New York": "Nueva York", "猫": "Neko"})


def test_terms_are_found_as_whole_words_longest_first_and_anywhere_in_chinese_or_japanese():
    assert TERMS.split("In New York, Naruto met Narutos.") == [
        "In ", ("New York", "Nueva York"), ", ", ("Naruto", "Naruto-kun"), " met Narutos."]
    assert TERMS.split("黒猫が好き") == ["黒", ("猫", "Neko"), "が好き"]  # no spaces between words here
    assert TERMS.within(["Hello Naruto", "nothing"]) == Glossary.of({"Naruto": "Naruto-kun"})
    assert Glossary.of({"York": "Y", "New York": "NY"}).split("New York") == [("New York", "NY")]
    assert Glossary().split("text") == ["text"] and not Glossary() and TERMS


def test_a_placeholder_kept_by_the_model_is_put_back_and_a_lost_one_is_noticed():
    protected, held = TERMS.protect("Naruto went to New York")
    assert "Naruto" not in protected and "New York" not in protected and held == ["Naruto-kun", "Nueva York"]
    assert restore(protected.replace("went to", "fue a"), held) == "Naruto-kun fue a Nueva York"
    assert restore("Naruto fue a Nueva York", held) is None  # the model translated the placeholder away
    twice = protected.split()[0]
    assert restore(f"{protected} {twice}", held) is None  # or repeated it


def test_the_digest_changes_with_any_term():
    assert TERMS.digest() == Glossary.of(dict(reversed(TERMS.terms))).digest()
    assert TERMS.digest() != Glossary.of({**TERMS.as_dict(), "Naruto": "Naruto-san"}).digest()





class LosesPlaceholders(CopiesUnknownWords):
    """A model that mangles anything it does not know (a small random model does)."""

    def __init__(self):
        super().__init__()
        self.given = []

    def translate(self, texts, src, dst, options):
        self.calls.append(list(texts))
        self.given.append((src, dst, options))
        return [" ".join(self.WORDS.get(word.lower(), "???") for word in text.split()) for text in texts]


def test_terms_are_substituted_around_a_model_that_copies_placeholders():
    backend = CopiesUnknownWords()
    plain = resolve(TSL_OPTIONS, {})
    assert translate_texts(backend, ["Naruto went to New York", "hello"], "en", "es", plain, TERMS) == [
        "Naruto-kun fue a Nueva York", "hola"]
    assert len(backend.calls) == 1 and not any("Naruto" in text for text in backend.calls[0])


def test_a_term_stays_whole_when_missing_spaces_are_restored():
    """restore_missing_spaces reads the made-up name "Quillmark" as "Quill mark" (two common words): a term
    of the reader's glossary is left whole, so that it is found and substituted."""
    backend = CopiesUnknownWords()
    restoring = resolve(TSL_OPTIONS, {"restore_missing_spaces": True})
    quill = Glossary.of({"Quillmark": "Plumamarca"})
    assert translate_texts(backend, ["Quillmark went to the city"], "en", "es", restoring, quill) == [
        "Plumamarca fue a la ciudad"]
    assert not any("Quill" in text for text in backend.calls[0])
    assert translate_texts(backend, ["Quillmark went"], "en", "es", restoring) == ["Quill mark fue"]  # no glossary


def test_a_model_that_loses_placeholders_gets_the_pieces_between_the_terms():
    backend = LosesPlaceholders()
    plain = resolve(TSL_OPTIONS, {})
    assert translate_texts(backend, ["Naruto went to the city", "hello"], "en", "es", plain, TERMS) == [
        "Naruto-kun fue a la ciudad", "hola"]
    assert backend.calls[1] == ["went to the city"]  # the second call: the pieces around the terms
    assert backend.given == [("en", "es", plain)] * 2  # with the request's languages and options
    japanese = translate_texts(LosesPlaceholders(), ["Naruto went to the city"], "en", "ja", plain, TERMS)
    assert japanese == ["Naruto-kunfue a la ciudad"]  # pieces joined as Japanese writes: without spaces


def test_batched_items_keep_their_own_glossary():
    backend = CopiesUnknownWords()
    plain = resolve(TSL_OPTIONS, {})
    items = [TranslationItem("hello Naruto", "en", "es", plain, TERMS),
             TranslationItem("hello Naruto", "en", "es", plain)]
    results, calls = translate_grouped(backend, items)
    assert results == ["hola Naruto-kun", "hola Naruto"] and calls == 2


@pytest.fixture
def service(tmp_path):
    service = in_process_service(tmp_path, FakeStages())
    select_all(service)
    return service


def run_tsl(service, text: str) -> str:
    return asyncio.run(service.pipeline.run_tsl(text, Overrides(), None))


def test_a_term_reaches_the_model_call_and_a_changed_glossary_translates_again(service):
    manual = service.manual
    assert run_tsl(service, "Hello Naruto") == "HELLO NARUTO"
    asyncio.run(manual.set_glossary_term(" Naruto ", "Naruto-kun"))  # trimmed, for the selected pair
    assert asyncio.run(manual.glossary()).model_dump() == {
        "lang_src": "en", "lang_dst": "es", "terms": {"Naruto": "Naruto-kun"}}
    run_tsl(service, "Hello Naruto")
    assert service.stages.calls["translate"] == 2  # not the stored translation: the glossary changed
    assert service.stages.last["glossary"] == Glossary.of({"Naruto": "Naruto-kun"})
    run_tsl(service, "Hello Naruto")
    assert service.stages.calls["translate"] == 2  # stored under the glossary: found again
    asyncio.run(manual.set_glossary_term("Naruto", "Naruto-san"))
    run_tsl(service, "Hello Naruto")
    assert service.stages.calls["translate"] == 3
    asyncio.run(manual.delete_glossary_term("Naruto"))
    assert run_tsl(service, "Hello Naruto") == "HELLO NARUTO" and service.stages.calls["translate"] == 3
    with pytest.raises(NotFound, match="no term 'Naruto'"):
        asyncio.run(manual.delete_glossary_term("Naruto"))


def test_glossaries_are_kept_per_language_pair(service):
    asyncio.run(service.manual.set_glossary_term("Naruto", "ナルト", "en", "ja"))
    assert asyncio.run(service.manual.glossary()).terms == {}
    assert asyncio.run(service.manual.glossary("en", "ja")).terms == {"Naruto": "ナルト"}
    with pytest.raises(BadRequest, match="not a known language|language"):
        asyncio.run(service.manual.glossary("xx", "ja"))


def test_a_glossary_call_may_name_either_language_of_its_pair(tmp_path):
    """Named languages need no selection; a language left out is the selected one."""
    service = in_process_service(tmp_path, FakeStages())
    service.store.update_selection(lang_src="", lang_dst="")
    asyncio.run(service.manual.set_glossary_term("Naruto", "ナルト", "en", "ja"))
    assert asyncio.run(service.manual.glossary("en", "ja")).terms == {"Naruto": "ナルト"}
    service.store.update_selection(lang_src="en", lang_dst="es")
    named_target = asyncio.run(service.manual.glossary(lang_dst="ja"))
    assert (named_target.lang_src, named_target.terms) == ("en", {"Naruto": "ナルト"})


def test_glossary_terms_are_checked(service, monkeypatch):
    manual = service.manual
    for term, translation in (("", "x"), ("x", "  "), ("x" * 101, "x"), ("x", "y" * 201)):
        with pytest.raises(BadRequest):
            asyncio.run(manual.set_glossary_term(term, translation))
    monkeypatch.setattr(glossary_module, "MAX_TERMS", 2)
    asyncio.run(manual.set_glossary_term("a", "1"))
    asyncio.run(manual.set_glossary_term("b", "2"))
    asyncio.run(manual.set_glossary_term("b", "3"))  # a new translation of a term is no new term
    with pytest.raises(PayloadTooLarge, match="at most|most terms"):
        asyncio.run(manual.set_glossary_term("c", "4"))
    assert asyncio.run(manual.glossary()).terms == {"a": "1", "b": "3"}
