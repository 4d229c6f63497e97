"""The model slots' one type, and each outside spelling translated at its boundary: every slot lands in
its own place (a swapped pair would select an OCR model as the box model)."""

import pytest

from core.answers import ActiveOptions, Handshake, selection_answer
from core.settings import DefaultSelection
from core.slots import KINDS, NO_CHOICE, ModelSlots, chosen
from deployments.http_api import RunOcrTslBody, RunTslBody, SetModelsBody
from service.store import DEFAULT_PROFILE, Selection, SelectionRow, Store

SLOTS = ModelSlots(box="b", ocr="o", tsl="t")


def test_a_slot_is_read_replaced_and_mapped_by_its_kind():
    assert KINDS == ("box", "ocr", "tsl")
    assert [SLOTS.get(kind) for kind in KINDS] == ["b", "o", "t"]
    assert list(SLOTS) == [("box", "b"), ("ocr", "o"), ("tsl", "t")]
    assert dict(SLOTS) == {"box": "b", "ocr": "o", "tsl": "t"}
    assert SLOTS.with_("ocr", "x") == ModelSlots("b", "x", "t") and SLOTS.ocr == "o"  # a new value, this one kept
    assert SLOTS.map(str.upper) == ModelSlots("B", "O", "T")
    assert ModelSlots.by_kind(lambda kind: kind * 2) == ModelSlots("boxbox", "ocrocr", "tsltsl")


def test_a_choice_falls_back_slot_by_slot_where_it_names_nothing():
    assert chosen(ocr="x") == ModelSlots(None, "x", None) and chosen() == NO_CHOICE == ModelSlots(None, None, None)
    assert chosen(box="x").or_(SLOTS) == ModelSlots("x", "o", "t")
    assert ModelSlots("", "y", "").or_(SLOTS) == ModelSlots("b", "y", "t")  # "" names nothing either
    assert NO_CHOICE.or_(ModelSlots("", "", "")) == ModelSlots("", "", "")


def test_the_extensions_request_fields_land_in_their_slots():
    """An empty name names no model: the selected one stays."""
    assert SetModelsBody(box_model_id="b", ocr_model_id="", tsl_model_id="t").models() == ModelSlots("b", None, "t")
    assert SetModelsBody().models() == NO_CHOICE
    overrides = RunOcrTslBody(lang_src="", lang_dst="es", box_model_id="b", ocr_model_id="o").overrides()
    assert (overrides.lang_src, overrides.lang_dst, overrides.models) == (None, "es", ModelSlots("b", "o", None))
    assert RunTslBody(text="hi", tsl_model_id="t").overrides().models == chosen(tsl="t")
    assert not overrides.any_model  # the handler decides, from the token


def test_the_answers_name_each_slot_as_the_extension_reads_it():
    hello = Handshake.of(["en"], ["es", "en"], ModelSlots(["b1"], ["o1"], ["t1"]), SLOTS, "en", "es").model_dump()
    assert {key: hello[key] for key in ("BOXModels", "OCRModels", "TSLModels")} == {
        "BOXModels": ["b1"], "OCRModels": ["o1"], "TSLModels": ["t1"]}
    assert (hello["box_selected"], hello["ocr_selected"], hello["tsl_selected"]) == ("b", "o", "t")
    assert (hello["Languages"], hello["Languages_hr"]) == (["en", "es"], ["English", "Spanish"])
    assert ActiveOptions.of(ModelSlots({}, {}, {})).options == {"box_model": {}, "ocr_model": {}, "tsl_model": {}}
    assert list(selection_answer("en", "es", SLOTS).items()) == [  # in the order /status has always shown
        ("lang_src", "en"), ("lang_dst", "es"), ("box_model", "b"), ("ocr_model", "o"), ("tsl_model", "t")]


def test_the_operators_config_keys_land_in_their_slots():
    defaults = DefaultSelection(lang_src="en", box_model="b", ocr_model="o", tsl_model="t")
    assert defaults.models == SLOTS and DefaultSelection().models == ModelSlots("", "", "")


@pytest.fixture
def store(tmp_path):
    store = Store(f"sqlite:///{tmp_path}/s.db")
    yield store
    store.close()


def test_the_store_keeps_each_slot_under_its_own_key_and_counts_each_slots_use(store):
    assert store.selection() == Selection() == Selection("", "", ModelSlots("", "", ""))
    assert store.update_selection("en", "es", SLOTS) == Selection("en", "es", SLOTS)
    assert store.update_selection(models=chosen(ocr="")) == Selection("en", "es", ModelSlots("b", "", "t"))
    assert store.update_selection(lang_dst="de") == Selection("en", "de", ModelSlots("b", "", "t"))  # None keeps
    assert [store.usage(kind) for kind in KINDS] == [{"b": 1}, {"o": 1}, {"t": 1}]
    assert (store.usage("lang_src"), store.usage("lang_dst")) == ({"en": 1}, {"es": 1, "de": 1})
    with store._session() as session:  # the columns each profile's selection has
        row = session.get(SelectionRow, DEFAULT_PROFILE)
    assert (row.lang_src, row.lang_dst, row.box_model, row.ocr_model, row.tsl_model) == ("en", "de", "b", "", "t")
