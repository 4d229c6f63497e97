import pytest

from core.errors import BadRequest
from core.options import TSL_OPTIONS, OptionSpec, cache_key, coerce, describe, resolve

SPECS = {
    "flag": OptionSpec(type="bool", default=False, description="d"),
    "count": OptionSpec(type="int", default=2, description="d", minimum=0, maximum=100),
    "ratio": OptionSpec(type="float", default=0.5, description="d", minimum=0, maximum=10),
    "chars": OptionSpec(type="str", default="", description="d"),
}


def test_defaults_and_values_coerced_from_form_strings():
    values = resolve(SPECS, {"flag": "true", "count": "7", "ratio": "1.5"})
    assert values == {"flag": True, "count": 7, "ratio": 1.5, "chars": ""}


def test_unknown_option_names_are_ignored():
    assert resolve(SPECS, {"old_option": 1}) == resolve(SPECS, None)


@pytest.mark.parametrize("name,value", [("flag", "maybe"), ("count", "1.5"), ("ratio", "x"), ("chars", 3),
                                        ("count", True), ("ratio", "nan")])
def test_wrong_values_are_client_errors(name, value):
    with pytest.raises(BadRequest, match=name):
        resolve(SPECS, {name: value})


def test_cache_key_is_canonical_and_skips_options_that_do_not_change_results():
    default = resolve(TSL_OPTIONS, {})
    same = resolve(TSL_OPTIONS, {"break_newlines": False, "favor_manual": False})
    assert cache_key(TSL_OPTIONS, default) == cache_key(TSL_OPTIONS, same)
    other = resolve(TSL_OPTIONS, {"break_newlines": True})
    assert cache_key(TSL_OPTIONS, default) != cache_key(TSL_OPTIONS, other)


def test_describe_has_the_extension_form_shape():
    assert describe(SPECS)["count"].model_dump() == {"type": "int", "default": 2, "description": "d", "value": 2}


def test_number_options_outside_their_bounds_are_client_errors():
    spec = OptionSpec(type="int", default=4, description="beams", minimum=1, maximum=16)
    assert coerce("num_beams", spec, "3") == 3
    with pytest.raises(BadRequest, match="at least 1"):
        coerce("num_beams", spec, 0)
    with pytest.raises(BadRequest, match="at most 16"):
        coerce("num_beams", spec, 17)


def test_text_options_are_capped_and_checked_before_any_model_runs():
    with pytest.raises(BadRequest, match="longer than 256"):
        resolve(TSL_OPTIONS, {"ignore_chars": "x" * 1_000_000})
    decoder = OptionSpec(type="str", default="greedy", description="d", choices=["greedy", "beamsearch"])
    assert coerce("decoder", decoder, "beamsearch") == "beamsearch"
    with pytest.raises(BadRequest, match="one of greedy, beamsearch"):
        coerce("decoder", decoder, "greedy|evil")
    for probe in ("a]|(a*)*b|[a", "[", "z-a", "\\", "^a-z"):
        with pytest.raises(BadRequest, match="allowed_start_end"):
            resolve(TSL_OPTIONS, {"allowed_start_end": probe})
    assert resolve(TSL_OPTIONS, {"allowed_start_end": "a-zA-Z0-9\\-\\.\\,\\;\\?\\! "})["allowed_start_end"]


def test_number_options_must_declare_their_bounds():
    with pytest.raises(ValueError, match="minimum and a maximum"):
        OptionSpec(type="float", default=0.5, description="unbounded")


def test_cache_key_is_a_fixed_size_digest_whatever_the_options_hold():
    long = resolve(TSL_OPTIONS, {"ignore_chars": "x" * 256, "break_chars": "y" * 256})
    assert len(cache_key(TSL_OPTIONS, long)) == 64 == len(cache_key(TSL_OPTIONS, resolve(TSL_OPTIONS, {})))


def test_an_empty_value_means_the_default():
    """The extension sends "" for a number field the reader cleared in its Advanced options."""
    assert resolve(SPECS, {"count": "", "ratio": None, "flag": "", "chars": ""}) == resolve(SPECS, None)


@pytest.mark.parametrize("text,value", [("true", True), ("1", True), ("yes", True), (" YES ", True),
                                        ("false", False), ("0", False), ("no", False), ("No", False)])
def test_every_form_spelling_of_a_bool_is_read(text, value):
    assert coerce("flag", SPECS["flag"], text) is value


def test_number_options_on_their_bounds_are_accepted():
    spec = OptionSpec(type="int", default=4, description="beams", minimum=1, maximum=16)
    assert coerce("num_beams", spec, 1) == 1
    assert coerce("num_beams", spec, 16) == 16


def test_a_character_set_error_names_its_own_option():
    spec = OptionSpec(type="str", default="", description="d", charset=True)
    with pytest.raises(BadRequest, match="'edge_chars'"):
        coerce("edge_chars", spec, "[")


def test_options_that_are_not_an_object_are_a_client_error_that_says_so():
    with pytest.raises(BadRequest, match="Each entry of 'options' must be an object"):
        resolve(SPECS, ["flag"])


def test_cache_key_of_given_options_is_stable_across_releases():
    """Stored runs are found by this digest: a change of its canonical form (separators, escaping of
    non-ASCII) would silently orphan every stored run."""
    values = resolve(TSL_OPTIONS, {"ignore_chars": "「」", "break_chars": "。"})
    assert cache_key(TSL_OPTIONS, values) == "cc735fc9df61d4423352363534d79cf963c86f4bf86a24f4c0a16d6fe73e1e3b"
