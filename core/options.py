"""Model options: their declaration, the values a request sends, and the key runs are stored under.

The extension renders `get_active_options` as a form and sends the chosen values back keyed by
model id; number fields arrive as strings, so values are coerced to the declared type.
"""

import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, PositiveInt, model_validator

from .answers import OptionDescription
from .boxes import MergeTolerances
from .errors import BadRequest
from .text import CharSet

OptionType = Literal["bool", "int", "float", "str"]


class OptionSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: OptionType
    default: Any
    description: str
    affects_result: bool = True
    """False for options that only choose among stored results (favor_manual): kept out of cache keys."""
    minimum: float | None = None
    maximum: float | None = None
    """Bounds of a number option: a value outside them is the client's error, not a model crash."""
    choices: list[str] | None = None
    """The only values a text option takes (a decoder's name, say)."""
    max_length: PositiveInt = 256
    """Longest value of a text option: values are kept with every stored result."""
    charset: bool = False
    """A text option that is a set of characters in regex class syntax (`core.text.CharSet`)."""

    @model_validator(mode="after")
    def _bounded(self) -> "OptionSpec":
        if self.type in ("int", "float") and (self.minimum is None or self.maximum is None):
            raise ValueError("number options declare a minimum and a maximum")
        return self


def coerce(name: str, spec: OptionSpec, value: Any) -> Any:
    def fail() -> BadRequest:
        return BadRequest(f"Option {name!r} must be a {spec.type}, got {value!r}.")

    if spec.type == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.strip().lower() in ("true", "1", "yes")
        raise fail()
    if spec.type == "str":
        if not isinstance(value, str):
            raise fail()
        if len(value) > spec.max_length:
            raise BadRequest(f"Option {name!r} is longer than {spec.max_length} characters.")
        if spec.choices is not None and value not in spec.choices:
            raise BadRequest(f"Option {name!r} must be one of {', '.join(spec.choices)}; got {value!r}.")
        if spec.charset:
            CharSet.parse(value, name)
        return value
    if isinstance(value, bool):
        raise fail()
    try:
        number = float(value) if spec.type == "float" else int(str(value).strip())
    except (TypeError, ValueError):
        raise fail() from None
    if spec.type == "float" and number != number:  # NaN
        raise fail()
    below = spec.minimum is not None and number < spec.minimum
    above = spec.maximum is not None and number > spec.maximum
    if below or above:
        limit = f"at least {spec.minimum:g}" if below else f"at most {spec.maximum:g}"
        raise BadRequest(f"Option {name!r} must be {limit}, got {value!r}.")
    return number


def resolve(specs: dict[str, OptionSpec], given: dict[str, Any] | None) -> dict[str, Any]:
    """Defaults overlaid with the request's values, each coerced to its declared type.

    Names the model does not declare are ignored: the extension keeps values of options that
    older model versions had, and those must not fail every request. An empty value (`""`, the
    extension's cleared form field, or null) means the default.
    """
    if given is not None and not isinstance(given, dict):
        raise BadRequest("Each entry of 'options' must be an object of option names to values.")
    values = {name: spec.default for name, spec in specs.items()}
    for name, value in (given or {}).items():
        if name in specs and value is not None and value != "":
            values[name] = coerce(name, specs[name], value)
    return values


def cache_key(specs: dict[str, OptionSpec], values: dict[str, Any]) -> str:
    """Digest of the values that change a model's output (canonical JSON): what runs are stored
    under, a fixed 64 characters whatever the options hold."""
    relevant = {name: values[name] for name in sorted(values) if specs[name].affects_result}
    canonical = json.dumps(relevant, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def describe(specs: dict[str, OptionSpec]) -> dict[str, OptionDescription]:
    """A model's options as `get_active_options` answers them (the extension's form)."""
    return {
        name: OptionDescription(type=spec.type, default=spec.default, description=spec.description, value=spec.default)
        for name, spec in specs.items()
    }


_MERGE = MergeTolerances()

BOX_OPTIONS: dict[str, OptionSpec] = {
    "merge_line_gap": OptionSpec(
        type="float", default=_MERGE.line_gap, minimum=0, maximum=10,
        description="Largest gap between two lines of one text block, in line heights. "
        "Raise it if paragraphs come back split into lines.",
    ),
    "merge_word_gap": OptionSpec(
        type="float", default=_MERGE.word_gap, minimum=0, maximum=50,
        description="Largest gap between two pieces of one line, in line heights.",
    ),
    "merge_height_ratio": OptionSpec(
        type="float", default=_MERGE.height_ratio, minimum=1, maximum=100,
        description="Largest ratio of text sizes inside one block (keeps titles apart from body text).",
    ),
    "merge_line_height_ratio": OptionSpec(
        type="float", default=_MERGE.line_height_ratio, minimum=1, maximum=100,
        description="Largest ratio of text sizes between two lines of one block (a sign's big line and the "
        "small translation under it are two blocks).",
    ),
    "merge_colour_distance": OptionSpec(
        type="float", default=_MERGE.colour_distance, minimum=0, maximum=1,
        description="Largest difference of text colours inside one block (0 same colour, 1 black and white; "
        "1 merges any colours).",
    ),
}

TSL_OPTIONS: dict[str, OptionSpec] = {
    "favor_manual": OptionSpec(
        type="bool", default=True, affects_result=False,
        description="Show your manual translation of a text instead of the machine one when there is one.",
    ),
    "ignore_chars": OptionSpec(type="str", default="", description="Characters removed before translating."),
    "break_chars": OptionSpec(
        type="str", default="",
        description="Characters after which the text is split; each piece is translated on its own.",
    ),
    "allowed_start_end": OptionSpec(
        type="str", default="", charset=True,
        description="Characters allowed at the start and end of a line, as in a regex class (a-zA-Z0-9\\.!? "
        "with \\ before - [ ] \\ ^); others are trimmed, such as bubble borders read as text.",
    ),
    "break_newlines": OptionSpec(
        type="bool", default=False,
        description="Translate each line separately. If off, lines are joined into one sentence.",
    ),
    "restore_dash_newlines": OptionSpec(
        type="bool", default=False,
        description="Rejoin words split with a dash at the end of a line.",
    ),
    "restore_missing_spaces": OptionSpec(
        type="bool", default=False,
        description="Put back spaces the OCR lost between words (\"thequick\" -> \"the quick\"), using the "
        "source language's word frequencies.",
    ),
}
