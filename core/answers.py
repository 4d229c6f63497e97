"""The answers of the extension API as types: the service returns them, the ingress sends them, and
the OpenAPI description (`deployments/http_api.py`) is built from them, so the three cannot drift."""

from typing import Annotated, Any, Literal, TypeVar, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    RootModel,
    ValidationInfo,
    field_validator,
    model_serializer,
)
from pydantic_core import PydanticCustomError

from . import glossary, languages
from .settings import BatchingSettings
from .slots import ModelKind, ModelSlots

EXTENSION_API_VERSION = [0, 7, 4]
"""The ocr_translate server version whose API we implement (the extension needs >= 0.6.0)."""

T = TypeVar("T")
_MODEL_KEYS = ModelSlots(box="box_model", ocr="ocr_model", tsl="tsl_model")
"""The model slots' keys in `get_active_options` and `GET /status`."""


def _by_model_key(slots: ModelSlots[T]) -> dict[str, T]:
    return {_MODEL_KEYS.get(kind): value for kind, value in slots}


class Handshake(BaseModel):
    version: list[int] = Field(min_length=3, max_length=3, examples=[EXTENSION_API_VERSION])
    Languages: list[str]
    Languages_src: list[str]
    Languages_dst: list[str]
    Languages_hr: list[str]
    BOXModels: list[str]
    OCRModels: list[str]
    TSLModels: list[str]
    box_selected: str
    ocr_selected: str
    tsl_selected: str
    lang_src: str
    lang_dst: str
    selection_note: str = Field("", description=(
        "Empty, or why the selection reads but does not translate: no translation model installed here "
        "translates the language pair, so the one selected shows the text as read. Not in the original's API "
        "(the extension ignores it)."))

    @classmethod
    def of(cls, src: list[str], dst: list[str], offered: ModelSlots[list[str]], selected: ModelSlots[str],
           lang_src: str, lang_dst: str, note: str = "") -> "Handshake":
        """From the languages models read (`src`) and write (`dst`) and the models offered, most used first."""
        # The extension fills both its source and target menus from `Languages`: every language a model
        # reads or writes.
        every = src + [code for code in dst if code not in src]
        return cls(version=EXTENSION_API_VERSION, Languages=every, Languages_src=src, Languages_dst=dst,
                   Languages_hr=[languages.name_of(code) for code in every],
                   BOXModels=offered.box, OCRModels=offered.ocr, TSLModels=offered.tsl,
                   box_selected=selected.box, ocr_selected=selected.ocr, tsl_selected=selected.tsl,
                   lang_src=lang_src, lang_dst=lang_dst, selection_note=note)


class Done(BaseModel):
    """`{}`: the change is made."""

    model_config = ConfigDict(extra="forbid")


class Accepted(BaseModel):
    """The change is made, and finishes in the background: `message` says what is still to come."""

    message: str


class TextBlock(BaseModel):
    ocr: str
    tsl: str
    box: list[int] = Field(min_length=4, max_length=4, description="[l, b, r, t] in image pixels.")
    lang_src: str | None = Field(None, description=(
        "Only when the source language is 'auto': the language detected in this block (null where it has no "
        "letters); a block in the destination language, or without letters, is shown as read."))
    untranslated: str | None = Field(None, description=(
        "Only when the source language is 'auto': why a block in a detected language is shown as read (no "
        "model this request may use translates that language; see security.override_models)."))

    @model_serializer(mode="wrap")
    def _without_unset_language(self, serialize):
        """An answer for a given source language keeps the extension's three keys only."""
        data = serialize(self)
        if self.lang_src is None and "lang_src" not in self.model_fields_set:
            data.pop("lang_src", None)
        if self.untranslated is None:
            data.pop("untranslated", None)
        return data


class OcrTslAnswer(BaseModel):
    result: list[TextBlock]


class TslAnswer(BaseModel):
    text: str


class StoredTranslation(BaseModel):
    text: str
    model: str


class TranslationsAnswer(BaseModel):
    translations: list[StoredTranslation]


class GlossaryAnswer(BaseModel):
    """The reader's glossary of a language pair: term -> the translation every model gives it."""

    lang_src: str
    lang_dst: str
    terms: dict[str, str]


class OptionDescription(BaseModel):
    type: Literal["bool", "int", "float", "str"]
    default: Any
    description: str
    value: Any


class ActiveOptions(BaseModel):
    options: dict[Literal["box_model", "ocr_model", "tsl_model"], dict[str, OptionDescription]]

    @classmethod
    def of(cls, described: ModelSlots[dict[str, OptionDescription]]) -> "ActiveOptions":
        return cls(options=_by_model_key(described))


class PluginInfo(BaseModel):
    name: str
    version: str | None
    description: str
    homepage: str
    warning: str | None
    installed: bool


class PluginData(RootModel[dict[str, PluginInfo]]):
    pass


class ReplicaInfo(BaseModel):
    replica: str
    deployment: str
    device: str = Field(description="'cpu (N threads)' or 'cuda: GPU <ids> (<name>)': what the replica really uses.")
    half_precision: bool = Field(description="Whether the config asks for float16 on a GPU; `engines` says what "
                                             "each model really runs in.")
    node: str = Field(description="The address of the replica's machine.")
    node_id: str = Field(description="Ray's id of the replica's node: nodes sharing a machine share its address.")
    pid: int
    loaded: list[str]
    engines: dict[str, str] = Field(description="Per loaded model: the engine, its precision and its device.")
    batching: BatchingSettings | None = Field(None, description="OCRReader and Translator: their batching now.")


class DeploymentInfo(BaseModel):
    status: str
    replicas: dict[str, int] = Field(description="Replicas per state, from Serve.")
    running: list[ReplicaInfo] = []


class ModelInfo(BaseModel):
    kind: ModelKind
    backend: str
    usable: bool
    reason: str | None


class DownloadInfo(BaseModel):
    repo: str = Field(description="The Hugging Face repository the weights come from.")
    state: Literal["downloading", "done", "failed"]
    bytes: int = Field(description="Bytes in the Hugging Face cache so far.")
    total_bytes: int | None = Field(description="The files' size; null until the hub has listed them.")
    percent: int
    error: str | None = Field(description="Why the download failed; selecting the model again retries it.")


class ProfilesStatus(BaseModel):
    """Reader profiles counted, never named nor told apart: how many, and how much they are used."""

    profiles: int = Field(0, description="Reader profiles, the default one (the bare paths') aside.")
    used_last_day: int = Field(0, description="Of those, the ones whose address was used in the last 24 hours.")
    requests: dict[str, int] = Field({}, description=(
        "Requests this ingress replica answered since it started, by the kind of path they came by: bare (the "
        "default profile's) or profile (any reader profile's address, /r/<key>/)."))


class StatusAnswer(BaseModel):
    deployments: dict[str, DeploymentInfo]
    plugins: dict[str, PluginInfo]
    selection: dict[str, str]
    models: dict[str, ModelInfo]
    downloads: dict[str, DownloadInfo] = Field(
        {}, description="Per model id, the downloads of its weights from the Hugging Face hub.")
    profiles: ProfilesStatus = Field(default_factory=ProfilesStatus)


def selection_answer(lang_src: str, lang_dst: str, models: ModelSlots[str]) -> dict[str, str]:
    """`StatusAnswer.selection`: the languages and models as the settings endpoints name them."""
    return {"lang_src": lang_src, "lang_dst": lang_dst, **_by_model_key(models)}


class ProfileInfo(BaseModel):
    name: str
    created: str = Field(description="When it was made (ISO 8601, UTC).")
    last_used: str | None = Field(description="When its address was last used (ISO 8601, UTC); null: never.")


class ProfilesAnswer(BaseModel):
    profiles: list[ProfileInfo] = Field(description="Every reader profile, the default one (the bare paths') first.")


class NewProfile(BaseModel):
    name: str
    path: str = Field(description="The profile's address on this server, `/r/<key>`: the reader pastes the server's "
                                  "address followed by it as the extension's server. Shown this once only.")


PROFILE_FORMAT = "ocr-translate-serve profile"
PROFILE_VERSION = 2
"""The export's format and the version an export writes: an import refuses any other format or a version
it does not read (`ProfileVersion`), so that a foreign or newer one is never half read."""
ProfileVersion = Literal[1, 2]
"""The versions an import reads. 2 added `model_choices`; a version 1 document (which has none) imports
as a profile that chose no models itself. A server from before version 2 refuses a version 2 document."""
PROFILE_VERSIONS: tuple[int, ...] = get_args(ProfileVersion)


def _language_or(*also: str) -> AfterValidator:
    """A language code as the store keeps it: ISO 639-1 (or `zht`), or one of `also`."""

    def checked(code: str) -> str:
        if code not in also and not languages.is_iso639_1(code):
            raise PydanticCustomError("language", "an ISO 639-1 language code (not {code})", {"code": repr(code)})
        return code

    return AfterValidator(checked)


_Language = Annotated[str, _language_or()]
_ModelId = Annotated[str, Field(max_length=200)]


class _Exported(BaseModel):
    """Part of a profile's export, which an import reads back: unknown keys and wrong types are refused."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class ExportedSelection(_Exported):
    lang_src: Annotated[str, _language_or("", languages.AUTO)] = ""
    lang_dst: Annotated[str, _language_or("")] = ""
    box_model: _ModelId = ""
    ocr_model: _ModelId = ""
    tsl_model: _ModelId = ""

    @property
    def models(self) -> ModelSlots[str]:
        return _MODEL_KEYS.map(lambda key: getattr(self, key))


class ExportedManualTranslation(_Exported):
    lang_src: _Language
    lang_dst: _Language
    text: str = Field(description="The text as the OCR read it.")
    translation: str


class ExportedTerm(_Exported):
    lang_src: _Language
    lang_dst: _Language
    term: str = Field(min_length=1, max_length=glossary.MAX_TERM_CHARS)
    translation: str = Field(min_length=1, max_length=glossary.MAX_TRANSLATION_CHARS)


class ExportedModelChoice(_Exported):
    """A model the reader chose for a language (`set_models`), which `set_lang` selects again when they come
    back to it. The model is taken as named: `set_lang` selects it only where the profile may use it then,
    else the server's default for the languages."""

    kind: ModelKind = Field(description="The slot: box (finds the text), ocr (reads it) or tsl (translates it).")
    lang_src: Annotated[str, _language_or(languages.AUTO)] = Field(
        description="The source language it was chosen for ('auto': detected).")
    lang_dst: Annotated[str, _language_or("")] = Field(
        description="The language translated into, for a translation model; '' for a box or OCR model, which is "
                    "chosen for the source language alone.")
    model: _ModelId = Field(min_length=1, description="The model's id, as the registry names it.")

    @field_validator("lang_dst")
    @classmethod
    def _source_language_alone(cls, lang_dst: str, info: ValidationInfo) -> str:
        kind = info.data.get("kind")
        if kind in ("box", "ocr") and lang_dst:
            raise PydanticCustomError("chosen_for_source", "'' for a box or OCR model, chosen for the source "
                                      "language alone (not {code})", {"code": repr(lang_dst)})
        return lang_dst


class ProfileDocument(_Exported):
    """A reader profile's settings, model choices, manual translations and glossary, never its key
    (docs/profiles.md): what an export writes and an import makes a new profile from. A version 1 document,
    written before `model_choices` was, still imports: without the key, the profile chose no models itself."""

    format: Literal[PROFILE_FORMAT]
    version: ProfileVersion = Field(description=f"The format's version: an export writes {PROFILE_VERSION}; "
                                                f"an import reads {' and '.join(map(str, PROFILE_VERSIONS))}.")
    name: str = Field(description="The exported profile's name (an import names its new profile itself).")
    exported: str = Field(description="When it was exported (ISO 8601, UTC).")
    selection: ExportedSelection = Field(description="Its languages and the three models ('' where none).")
    model_choices: list[ExportedModelChoice] = Field(
        default_factory=list, description="The models it chose itself, per source language (box, OCR) or language "
                                          "pair (translation). Absent (version 1): none.")
    manual_translations: list[ExportedManualTranslation]
    glossary: list[ExportedTerm] = Field(description="Its glossary terms, every language pair.")


class ErrorAnswer(BaseModel):
    error: str = Field(description="One sentence saying what went wrong and what to do.")
