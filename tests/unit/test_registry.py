from pathlib import Path

import pytest

from core.errors import BadRequest, ModelLoadError
from models_registry import Registry, RegistryError
from models_registry.backends.tesseract import installed_languages
from tests.support.live import ABSENT_TESSERACT, write_absent_entry


def write(folder: Path, text: str) -> Path:
    (folder / "extra.yaml").write_text(text)
    return folder


def test_builtin_entries_load_and_offline_models_are_usable():
    registry = Registry.load()
    for model_id in ("easyocr/craft", "easyocr/en", "tesseract/eng", "tesseract/jpn_vert",
                     "apertium/eng-spa", "apertium/spa-eng", "original"):
        assert registry.availability(model_id).usable, model_id
    assert registry.get("tesseract/jpn_vert").option_specs["psm"].default == 5


def test_missing_traineddata_hides_the_model_with_the_package_to_install(tmp_path):
    registry = Registry.load([write_absent_entry(tmp_path)])
    absent = [e for e in registry.entries.values() if e.backend == "tesseract"
              and not set(e.weights.name.split("+")) <= installed_languages()]
    assert [e.id for e in absent] == [ABSENT_TESSERACT]  # every built-in language is installed
    availability = registry.availability(absent[0].id)
    assert not availability.usable
    assert "apt-get install tesseract-ocr-" in availability.reason
    assert absent[0].id not in [e.id for e in registry.usable("ocr")]


def test_start_up_names_every_unavailable_model_in_one_warning(caplog, tmp_path):
    registry = Registry.load([write_absent_entry(tmp_path)])
    with caplog.at_level("WARNING", logger="models_registry.registry"):
        registry.usable("ocr")
    [line] = caplog.messages
    unavailable = [i for i in registry.entries if not registry.availability(i).usable]
    assert line.startswith(f"{len(unavailable)} of {len(registry.entries)} models are unavailable")
    assert all(model_id in line for model_id in unavailable)


def test_disabled_family_hides_its_models():
    registry = Registry.load()
    assert "apertium/eng-spa" not in [e.id for e in registry.usable("tsl", frozenset({"apertium"}))]


def test_extra_folder_adds_entries(tmp_path):
    write(tmp_path, """
- id: my/pass
  kind: tsl
  backend: original
  languages: [ja]
  languages_dst: [en, de]
  default_options: {break_newlines: "true"}
""")
    entry = Registry.load([tmp_path]).get("my/pass")
    assert entry.translates("ja", "de") and not entry.translates("en", "de")
    assert entry.option_specs["break_newlines"].default == "true"


def test_every_entry_has_the_options_its_backend_reads_with_the_entrys_defaults(tmp_path):
    registry = Registry.load()
    for entry in registry.entries.values():
        declared = registry.backend_class(entry).declared_options
        assert set(declared) <= set(entry.option_specs), entry.id
        for name, spec in declared.items():
            assert entry.option_specs[name].default == entry.default_options.get(name, spec.default), (entry.id, name)
    assert registry.get("tesseract/eng").option_specs["psm"].default == 6
    assert registry.get("tesseract/jpn_vert").option_specs["psm"].default == 5
    write(tmp_path, "- {id: my/eng, kind: ocr, backend: tesseract, languages: [en], default_options: {psm: 7}}")
    specs = Registry.load([tmp_path]).get("my/eng").option_specs
    assert specs["psm"].default == 7 and (specs["psm"].minimum, specs["psm"].maximum) == (0, 13)


@pytest.mark.parametrize("text,problem", [
    ("- {id: x, kind: tsl, backend: original, languages: [ja], languages_dst: [en], colour: red}", "colour"),
    ("- {id: x, kind: ocr, backend: tesseract, languages: [japanese]}", "ISO 639-1"),
    ("- {id: x, kind: tsl, backend: original, languages: [ja]}", "languages_dst"),
    ("- {id: x, kind: ocr, backend: nosuch, languages: [ja]}", "unknown backend"),
    ("- {id: x, kind: box, backend: apertium, languages: [ja]}", "no box models"),
    ("- {id: tesseract/eng, kind: ocr, backend: tesseract, languages: [en]}", "declared twice"),
    ("- {id: x, kind: ocr, backend: tesseract, languages: [en], default_options: {nope: 1}}", "nope"),
    ("- {id: x, kind: tsl, backend: original, languages: [ja], languages_dst: [en], "
     "default_options: {break_newlines: sometimes}}", "break_newlines"),
    ("- {id: manual, kind: tsl, backend: original, languages: [ja], languages_dst: [en]}", "reserved"),
    ("- {id: x, kind: ocr, backend: tesseract, languages: [en], options: {psm: {type: int, default: 6, "
     "minimum: 0, maximum: 13, description: p}}}", "declares `options`"),
    ("- {id: x, kind: ocr, backend: tesseract, languages: [en], default_options: {psm: null}}", "cannot remove"),
    ("- {id: x, kind: ocr, backend: tesseract, languages: [en], default_options: {psm: 14}}", "psm"),
    ("- id: [unclosed", "invalid model entries"),
    ("- {id: x, kind: tsl, backend: huggingface, languages: [ja], languages_dst: [en], "
     "settings: {target: sideways}}", "invalid settings"),
    ("- {id: x, kind: tsl, backend: original, languages: [ja], languages_dst: [en], settings: {a: 1}}",
     "invalid settings"),
])
def test_malformed_entries_stop_start_up_with_the_reason(tmp_path, text, problem):
    with pytest.raises(RegistryError, match=problem):
        Registry.load([write(tmp_path, text)])


def test_unknown_model_and_load_of_unavailable_model_say_why(tmp_path):
    registry = Registry.load([write_absent_entry(tmp_path)])
    with pytest.raises(BadRequest, match="Unknown model id"):
        registry.get("nope")
    absent = next(e for e in registry.entries.values()
                  if e.backend == "tesseract" and not registry.availability(e.id).usable)
    with pytest.raises(ModelLoadError, match="not installed"):
        registry.load_backend(absent.id, absent.kind)


def test_language_codes_follow_the_entry():
    registry = Registry.load()
    assert registry.get("easyocr/en").code_for("en") == "en"
    entry = registry.get("apertium/eng-spa").model_copy(update={"code_style": "iso639_3"})
    assert entry.code_for("ja") == "jpn"


def test_config_model_settings_replace_an_entry_settings_and_are_checked():
    registry = Registry.load(model_settings={"rapidocr/ppocr-v4-rec": {"batch_size": 3}})
    assert registry.get("rapidocr/ppocr-v4-rec").settings == {"batch_size": 3}
    assert Registry.load().get("rapidocr/ppocr-v4-rec").settings == {}
    with pytest.raises(RegistryError, match="unknown models"):
        Registry.load(model_settings={"nope/model": {"batch_size": 3}})
    with pytest.raises(RegistryError, match="invalid settings"):
        Registry.load(model_settings={"rapidocr/ppocr-v4-rec": {"batch_size": 0}})


def test_every_language_a_fresh_install_offers_has_a_box_and_an_ocr_model():
    """What `make run` installs: a reader who picks any source language can have its text read."""
    registry = Registry.load()
    sources = {code for entry in (*registry.usable("ocr"), *registry.usable("tsl")) for code in entry.languages
               if code != "*"}
    assert {"en", "ja", "zh", "ko", "fr", "de", "es", "it", "pt", "ru"} <= sources
    for code in sorted(sources):
        assert any(entry.reads_language(code) for entry in registry.usable("box")), code
        assert any(entry.reads_language(code) for entry in registry.usable("ocr")), code
    pairs = {(src, dst) for entry in registry.usable("tsl") if entry.backend == "apertium"
             for src in entry.languages for dst in entry.languages_dst}
    assert {("en", "es"), ("es", "en"), ("en", "ca"), ("ca", "en"), ("en", "gl"), ("eo", "en"), ("mk", "en")} <= pairs
