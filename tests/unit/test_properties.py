"""Property-based tests of the pure logic under the endpoints: whatever a client sends, the answer
is a result or a client error (never a crash), and no text or box is lost on the way."""

import base64
import io
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from core.boxes import Box, MergeTolerances, merge_into_blocks
from core.errors import BadRequest, PayloadTooLarge
from core.imaging import FORMATS, decode_image
from core.options import TSL_OPTIONS, cache_key, resolve
from core.text import CharSet, PreProcessing, pre_tokenize
from models_registry import Registry

JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
JSON = st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    st.text(max_size=8), inner, max_size=3), max_leaves=8)
OPTION_SPECS = [entry.option_specs for entry in Registry.load().entries.values()]


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_any_contents_decode_to_pixels_or_a_client_error(data):
    for contents in (base64.b64encode(data).decode(), data.decode("latin-1")):
        try:
            pixels = decode_image(contents, max_pixels=10_000)
        except (BadRequest, PayloadTooLarge):
            continue
        assert pixels.ndim == 3 and pixels.shape[2] == 3 and pixels.dtype == np.uint8


def _writable(mode: str, fmt: str) -> bool:
    try:
        Image.new(mode, (2, 2)).save(io.BytesIO(), fmt)
    except (OSError, ValueError, KeyError):
        return False
    return True


MODES_AND_FORMATS = [(mode, fmt) for mode in ("1", "L", "P", "RGB", "RGBA", "LA", "I;16", "CMYK")
                     for fmt in FORMATS if _writable(mode, fmt)]
"""Every pixel mode the API's formats carry (TIFF, BMP and the rest are refused: tests/serve/test_hostile.py)."""


@settings(max_examples=60, deadline=None)
@given(mode_and_format=st.sampled_from(MODES_AND_FORMATS),
       size=st.tuples(st.integers(1, 60), st.integers(1, 60)))
def test_real_images_of_any_mode_decode_to_their_size(mode_and_format, size):
    mode, fmt = mode_and_format
    buffer = io.BytesIO()
    Image.new(mode, size).save(buffer, fmt)
    pixels = decode_image(base64.b64encode(buffer.getvalue()).decode(), max_pixels=10_000)
    assert pixels.shape == (size[1], size[0], 3)


@settings(max_examples=300, deadline=None)
@given(specs=st.sampled_from(OPTION_SPECS), given_options=JSON)
def test_any_options_resolve_to_declared_types_or_a_client_error(specs, given_options):
    try:
        values = resolve(specs, given_options)
    except BadRequest:
        return
    assert set(values) == set(specs)
    for name, value in values.items():
        expected = {"bool": bool, "int": int, "float": (int, float), "str": str}[specs[name].type]
        assert isinstance(value, expected)
    cache_key(specs, values)  # always storable


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=80), break_chars=st.text(max_size=3), ignore_chars=st.text(max_size=3),
       allowed=st.text(max_size=6), break_newlines=st.booleans(), dashes=st.booleans())
def test_pre_tokenize_never_crashes_and_splitting_loses_nothing(text, break_chars, ignore_chars, allowed,
                                                               break_newlines, dashes):
    options = PreProcessing(ignore_chars=ignore_chars, break_chars=break_chars, allowed_start_end=allowed,
                            break_newlines=break_newlines, restore_dash_newlines=dashes)
    try:
        pieces = pre_tokenize(text, options)
    except BadRequest:
        assert allowed  # only a malformed character set is the client's error
        return
    assert all(piece and piece == " ".join(piece.split()) for piece in pieces)
    split_only = pre_tokenize(text, PreProcessing(break_chars=break_chars, break_newlines=break_newlines))
    assert "".join("".join(split_only).split()) == "".join(text.split())


@settings(max_examples=300, deadline=None)
@given(value=st.text(alphabet=st.sampled_from("a-z\\[]^()*|+?.!0 "), max_size=256) | st.text(max_size=256),
       text=st.text(alphabet=st.sampled_from("aZ!|( \n-"), min_size=1, max_size=400))
def test_any_character_option_costs_bounded_work_per_character_and_fails_only_with_a_400(value, text):
    """Whatever a client sends as a character option, pre-processing is one pass over the text: the
    set lookups (the only work that depends on the option) are at most two per character, and no
    pattern is ever built from the option."""
    try:
        values = resolve(TSL_OPTIONS, {"allowed_start_end": value, "break_chars": value, "ignore_chars": value})
    except BadRequest:
        return
    lookups = 0
    contains = CharSet.__contains__

    def counted(charset, char):
        nonlocal lookups
        lookups += 1
        return contains(charset, char)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(CharSet, "__contains__", counted)
        # Every function of `re` compiles through re._compile (CPython): none may run here.
        patch.setattr(re, "_compile", lambda *args, **kwargs: pytest.fail(f"a pattern was built: {args}"))
        settings_ = PreProcessing.of(values, "en")
        pre_tokenize(text, settings_)
    assert lookups <= 2 * len(text)


BOXES = st.lists(
    st.builds(lambda l, b, w, h: Box(l, b, l + w, b + h), st.integers(0, 500), st.integers(0, 500),
              st.integers(1, 200), st.integers(1, 120)),
    max_size=25)


@settings(max_examples=200, deadline=None)
@given(singles=BOXES, vertical=st.booleans(), line_gap=st.floats(0, 3), word_gap=st.floats(0, 3))
def test_merging_keeps_every_box_once_inside_its_block(singles, vertical, line_gap, word_gap):
    blocks = merge_into_blocks(singles, MergeTolerances(line_gap=line_gap, word_gap=word_gap), vertical)
    kept = sorted(box for block in blocks for box in block.singles)
    assert kept == sorted(singles)
    for block in blocks:
        assert all(block.box.l <= s.l and s.r <= block.box.r and block.box.b <= s.b and s.t <= block.box.t
                   for s in block.singles)
