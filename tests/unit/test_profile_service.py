"""The endpoints' logic for several reader profiles in one service (issue 27): each profile's selection,
manual translations and glossary apply to its own requests only, while the box, OCR and machine
translation results are computed once for everyone."""

import asyncio

import pytest

from core.errors import NotAcceptable
from core.profile_keys import key_digest, new_key
from core.slots import chosen
from service.jobs import Overrides
from tests.support.images import TWO_PARAGRAPHS, encode, render
from tests.support.services import FakeStages, in_process_service


@pytest.fixture
def service(tmp_path):
    return in_process_service(tmp_path, FakeStages())


def select(service, profile: int, dst: str) -> None:
    asyncio.run(service.catalogue.set_lang("en", dst, profile))
    asyncio.run(service.catalogue.set_models(chosen("easyocr/craft", "tesseract/eng", "apertium/eng-spa"
                                                    if dst == "es" else "original"), profile))


def read(service, profile: int, contents: str | None, md5: str) -> list[dict]:
    blocks = asyncio.run(service.pipeline.run_ocrtsl(contents=contents, md5=md5, force=False, given_options=None,
                                                     overrides=Overrides(profile=profile)))
    return [block.model_dump() for block in blocks]


def test_profiles_read_with_their_own_selection_and_share_the_computed_results(service):
    alice = service.store.create_profile("alice", key_digest(new_key())).id
    select(service, 1, "es")
    select(service, alice, "fr")
    hello = asyncio.run(service.catalogue.handshake(alice))
    assert (hello.lang_dst, hello.tsl_selected) == ("fr", "original")
    assert asyncio.run(service.catalogue.handshake()).lang_dst == "es"

    contents, md5 = encode(render(TWO_PARAGRAPHS))
    default = read(service, 1, contents, md5)
    calls = dict(service.stages.calls)
    with pytest.raises(NotAcceptable):  # the md5-only call: nothing translated into French yet
        read(service, alice, None, md5)
    theirs = read(service, alice, contents, md5)  # boxes and OCR as the other reader stored them
    assert [b["ocr"] for b in theirs] == [b["ocr"] for b in default]
    assert [b["tsl"] for b in default] == [b["ocr"].upper() for b in default]  # the fake translator, to es
    assert service.stages.last["translate"][:3] == ("original", "en", "fr")  # alice's translation: her own
    assert (service.stages.calls["detect"], service.stages.calls["read"]) == (calls["detect"], calls["read"])


def test_a_profiles_manual_translations_and_glossary_are_its_own(service):
    alice = service.store.create_profile("alice", key_digest(new_key())).id
    for profile in (1, alice):
        select(service, profile, "es")
    contents, md5 = encode(render(TWO_PARAGRAPHS))
    first = read(service, 1, contents, md5)[0]
    asyncio.run(service.manual.set_manual_translation(first["ocr"], "Mi propia", alice))
    asyncio.run(service.manual.set_glossary_term("Naruto", "Naruto-kun", profile=alice))
    assert read(service, alice, contents, md5)[0]["tsl"] == "Mi propia"  # (new terms: translated again)
    assert read(service, 1, None, md5)[0]["tsl"] == first["tsl"]
    assert {"text": "Mi propia", "model": "manual"} in [t.model_dump() for t in asyncio.run(
        service.manual.get_translations(first["ocr"], alice))]
    assert "manual" not in [t.model for t in asyncio.run(service.manual.get_translations(first["ocr"]))]
    assert asyncio.run(service.manual.glossary(profile=alice)).terms == {"Naruto": "Naruto-kun"}
    assert asyncio.run(service.manual.glossary()).terms == {}


class WaitsForTheOtherReader(FakeStages):
    """Detection ends only once `readers` requests have looked the image's boxes up and found none, so
    that every one of them is in flight before any result is stored."""

    def __init__(self, readers: int):
        super().__init__()
        self.readers = readers
        self.missed = 0

    def watch(self, store) -> None:
        find = store.find_blocks

        def counted(*args):
            found = find(*args)
            self.missed += found is None
            return found

        store.find_blocks = counted

    async def detect(self, model_id, image, lang, options):
        while self.missed < self.readers:
            await asyncio.sleep(0.01)
        return await super().detect(model_id, image, lang, options)


@pytest.mark.parametrize("destinations", [("es", "fr"), ("es", "es")])
def test_profiles_reading_one_image_at_once_run_each_stage_once_between_them(tmp_path, destinations):
    """Their requests differ (profiles, maybe destinations), yet the boxes and the OCR they both need are
    computed once, and so are the machine translations when their pairs are the same."""
    service = in_process_service(tmp_path, stages := WaitsForTheOtherReader(readers=2))
    stages.watch(service.store)
    profiles = [1, service.store.create_profile("alice", key_digest(new_key())).id]
    for profile, dst in zip(profiles, destinations, strict=True):
        select(service, profile, dst)
    contents, md5 = encode(render(TWO_PARAGRAPHS))

    async def both():
        return await asyncio.gather(*(service.pipeline.run_ocrtsl(
            contents=contents, md5=md5, force=False, given_options=None, overrides=Overrides(profile=profile))
            for profile in profiles))

    answers = asyncio.run(both())
    assert (stages.calls["detect"], stages.calls["read"]) == (1, 2)  # two blocks, read once
    assert stages.calls["translate"] == 2 * len(set(destinations))
    assert [block.ocr for block in answers[0]] == [block.ocr for block in answers[1]]


def test_a_new_profile_starts_with_the_default_profiles_selection_then_goes_its_own_way(service):
    """So that a reader who pastes their new address reads at once; their choices are theirs alone."""
    from service.profiles import Profiles

    select(service, 1, "es")
    made, _ = Profiles(service.store).create("bob")
    assert service.store.selection(made.id) == service.store.selection()
    select(service, made.id, "fr")
    assert service.store.selection().lang_dst == "es" and service.store.selection(made.id).lang_dst == "fr"
