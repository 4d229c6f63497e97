from sqlalchemy import func, select

from core.boxes import Block, Box
from core.store import OCRRunRow, Store

MD5 = "0" * 32


def block(*boxes: Box) -> Block:
    return Block(box=Box(min(b.l for b in boxes), min(b.b for b in boxes), max(b.r for b in boxes),
                         max(b.t for b in boxes)), lines=[[b] for b in boxes])


def test_selection_and_usage_persist_across_restarts(tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    store = Store(url)
    store.update_selection(lang_src="ja", lang_dst="en", tsl_model="m1")
    store.update_selection(tsl_model="m2")
    store.update_selection(tsl_model="m2")
    store.set_disabled_families(["apertium"])
    store.close()
    again = Store(url)
    selection = again.selection()
    assert (selection.lang_src, selection.lang_dst, selection.tsl_model) == ("ja", "en", "m2")
    assert again.usage("tsl_model") == {"m1": 1, "m2": 2}
    assert again.disabled_families() == {"apertium"}


def test_box_run_round_trip_keeps_order_and_lines(tmp_path):
    store = Store(f"sqlite:///{tmp_path}/s.db")
    blocks = [block(Box(0, 0, 10, 5), Box(0, 6, 8, 11)), block(Box(50, 50, 60, 55))]
    saved = store.save_blocks(MD5, "box", "en", "{}", blocks)
    found = store.find_blocks(MD5, "box", "en", "{}")
    assert [s.block for s in found] == blocks and [s.id for s in found] == [s.id for s in saved]
    assert store.find_blocks(MD5, "box", "en", '{"x":1}') is None
    assert store.find_blocks(MD5, "box", "ja", "{}") is None


def test_forced_box_run_replaces_the_old_one_and_its_ocr(tmp_path):
    store = Store(f"sqlite:///{tmp_path}/s.db")
    first = store.save_blocks(MD5, "box", "en", "{}", [block(Box(0, 0, 10, 5))])
    store.save_ocr({first[0].id: "old"}, "ocr", "en", "{}")
    second = store.save_blocks(MD5, "box", "en", "{}", [block(Box(1, 1, 9, 4)), block(Box(20, 20, 30, 30))])
    assert len(store.find_blocks(MD5, "box", "en", "{}")) == 2
    assert store.find_ocr([s.id for s in second], "ocr", "en", "{}") == {}
    with store._session() as session:
        assert session.scalar(select(func.count()).select_from(OCRRunRow)) == 0


def test_manual_translation_wins_only_when_favoured(tmp_path):
    store = Store(f"sqlite:///{tmp_path}/s.db")
    store.save_translations({"hello": "hola"}, "tsl", "en", "es", "{}")
    assert store.find_translations(["hello"], "tsl", "en", "es", "{}", True) == {"hello": "hola"}
    store.set_manual_translation("hello", "en", "es", "¡hola!")
    store.set_manual_translation("hello", "en", "es", "¡buenas!")  # replaces
    assert store.find_translations(["hello"], "tsl", "en", "es", "{}", True) == {"hello": "¡buenas!"}
    assert store.find_translations(["hello"], "tsl", "en", "es", "{}", False) == {"hello": "hola"}
    assert store.translations_of("hello", "en", "es") == [("manual", "¡buenas!"), ("tsl", "hola")]
    assert store.translations_of("hello", "en", "fr") == []
    assert store.translations_of("never seen", "en", "es") is None


def test_texts_are_stored_once(tmp_path):
    store = Store(f"sqlite:///{tmp_path}/s.db")
    store.save_translations({"a": "x", "b": "x"}, "tsl", "en", "es", "{}")
    store.save_translations({"a": "y"}, "tsl", "en", "es", "{}")  # a re-run updates in place
    assert store.find_translations(["a", "b"], "tsl", "en", "es", "{}", False) == {"a": "y", "b": "x"}
    assert store.knows_text("x") and store.knows_text("a") and not store.knows_text("z")
