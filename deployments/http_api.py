"""The extension's HTTP API as data: request bodies, what an endpoint is, and the OpenAPI description
built from an endpoint table (the answers' types are in `core/answers.py`, which the service returns).

The table itself, `deployments.handlers.ENDPOINTS`, stands beside the handlers it names; the app
builds its routes from it and `openapi_document(ENDPOINTS)` the description (served at GET
/openapi.json), so the description cannot drift from what the server accepts; the fuzz tests hold
the answers to it.
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr
from pydantic.json_schema import models_json_schema
from starlette.requests import Request
from starlette.responses import Response

from core.answers import EXTENSION_API_VERSION, ErrorAnswer, ProfileDocument
from core.slots import ModelSlots
from service.jobs import Overrides


# -- request bodies and queries: unknown keys and wrong types are client errors -----------------------
class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _ModelOverrides(_Body):
    lang_src: StrictStr | None = Field(None, description=(
        "Source language for this request only; 'auto' detects each block's language (see TextBlock.lang_src)."))
    lang_dst: StrictStr | None = Field(None, description="Target language for this request only.")
    box_model_id: StrictStr | None = Field(None, description="Box model for this request only.")
    ocr_model_id: StrictStr | None = Field(None, description="OCR model for this request only.")
    tsl_model_id: StrictStr | None = Field(None, description="Translation model for this request only.")

    def overrides(self) -> Overrides:
        """An empty name (or language) keeps the selected one."""
        return Overrides(lang_src=self.lang_src or None, lang_dst=self.lang_dst or None,
                         models=_named(self.box_model_id, self.ocr_model_id, self.tsl_model_id))


def _named(box_model_id: str | None, ocr_model_id: str | None, tsl_model_id: str | None) -> ModelSlots[str | None]:
    """The extension's three model fields as the model slots; an empty name names no model."""
    return ModelSlots(box=box_model_id or None, ocr=ocr_model_id or None, tsl=tsl_model_id or None)


ModelOptions = dict[str, dict[str, Any]] | None


class SetLangBody(_Body):
    lang_src: StrictStr
    lang_dst: StrictStr


class SetModelsBody(_Body):
    box_model_id: StrictStr | None = None
    ocr_model_id: StrictStr | None = None
    tsl_model_id: StrictStr | None = None

    def models(self) -> ModelSlots[str | None]:
        """The models to select; an empty name keeps the slot's."""
        return _named(self.box_model_id, self.ocr_model_id, self.tsl_model_id)


class RunOcrTslBody(_ModelOverrides):
    contents: StrictStr | None = Field(None, description="The image file in base64.")
    md5: StrictStr | None = Field(None, description="Hex md5 of the base64 string in 'contents'.")
    force: StrictBool = False
    options: ModelOptions = Field(None, description="Per model id, that model's options (get_active_options).")


class RunTslBody(_ModelOverrides):
    text: StrictStr
    options: ModelOptions = None


class NewProfileBody(_Body):
    name: StrictStr = Field(min_length=1, max_length=100, description="A name the operator knows the reader by.")


class ProfileNameBody(_Body):
    name: StrictStr


class ImportProfileBody(NewProfileBody):
    profile: ProfileDocument = Field(description="What GET /profiles/export/ answered (or `python -m "
                                                 "service.profiles export` wrote).")


class ManualTranslationBody(_Body):
    text: StrictStr
    translation: StrictStr


class _GlossaryPair(_Body):
    lang_src: StrictStr | None = Field(None, description="Source language; default: the selected one.")
    lang_dst: StrictStr | None = Field(None, description="Target language; default: the selected one.")


class GlossaryQuery(_GlossaryPair):
    pass


class GlossaryTermBody(_GlossaryPair):
    term: StrictStr = Field(description="The text as the OCR reads it (a name, a place).")
    translation: StrictStr = Field(description="What every model must translate it to.")


class GlossaryDeleteBody(_GlossaryPair):
    term: StrictStr


class ManagePluginsBody(_Body):
    plugins: dict[str, StrictBool]


class TextQuery(_Body):
    text: StrictStr


class XuaQuery(TextQuery):
    """XUnity.AutoTranslator's custom endpoint sends the pair with each text."""

    from_: StrictStr | None = Field(None, alias="from", description="Source language for this text only.")
    to: StrictStr | None = Field(None, description="Target language for this text only.")


# -- the endpoints -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Endpoint:
    path: str
    method: Literal["GET", "POST"]
    handler: Callable[[Request], Awaitable[Response]]
    """Its handler function (`deployments.handlers`); the function's name is the operationId."""
    summary: str
    answer: type[BaseModel] | None
    """The JSON answer's model; None: plain text."""
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    errors: tuple[int, ...] = ()
    """Statuses besides the ones every endpoint of its kind can answer."""
    needs_token: bool = False
    """Changes the server's settings or shows its internals: needs the API token (`SecuritySettings`)."""
    readers_own: bool = False
    """Changes only the profile's own settings: under a profile's address (`/r/<key>/`) its key is enough."""
    html: bool = False
    """Also answers a small HTML page to clients that accept text/html (a browser)."""
    accepted: type[BaseModel] | None = None
    """The 202 answer, when the change may finish in the background (a model still downloading)."""


OPENAPI_PATH = "/openapi.json"
_BODY_ERRORS = (400, 408, 413)
_REASONS = {400: "Bad request", 401: "API token missing or wrong",
            403: "Refused: a web page's request, a choice only the API token allows, or past a bound the operator "
                 "sets on reader profiles",
            404: "Not found", 406: "No stored result", 408: "The request body came too slowly", 413: "Too large",
            429: "Too many model loads, or this client's (or reader profile's) new results for the hour: retry "
                 "after Retry-After seconds",
            502: "A server the translation model calls (a language model's chat API) failed",
            503: "Busy: retry after Retry-After seconds",
            504: "A server the translation model calls did not answer in time",
            512: "Languages not selected", 513: "Models not selected"}


def _error_statuses(endpoint: Endpoint) -> list[int]:
    statuses = {*endpoint.errors, 503}
    if endpoint.body:
        statuses |= set(_BODY_ERRORS)
    if endpoint.needs_token:
        statuses |= {401, 403}  # 403: a web page, on a server with no token set
    return sorted(statuses)


def _operation(endpoint: Endpoint, schemas: dict) -> dict[str, Any]:
    ok = ({"application/json": {"schema": schemas[endpoint.answer]}} if endpoint.answer
          else {"text/plain": {"schema": {"type": "string"}}})
    if endpoint.html:
        ok["text/html"] = {"schema": {"type": "string"}}
    responses = {"200": {"description": "OK", "content": ok}}
    if endpoint.accepted:
        responses["202"] = {"description": "Done, and finishing in the background: the message says what is to come",
                            "content": {"application/json": {"schema": schemas[endpoint.accepted]}}}
    for status in _error_statuses(endpoint):
        responses[str(status)] = {"description": _REASONS[status],
                                  "content": {"application/json": {"schema": schemas[ErrorAnswer]}}}
    operation: dict[str, Any] = {"operationId": endpoint.handler.__name__, "summary": endpoint.summary,
                                 "responses": responses}
    if endpoint.body:
        operation["requestBody"] = {"required": True,
                                    "content": {"application/json": {"schema": schemas[endpoint.body]}}}
    if endpoint.query:
        required = endpoint.query.model_json_schema().get("required", [])
        operation["parameters"] = [
            {"name": field.alias or name, "in": "query", "required": (field.alias or name) in required,
             "schema": {"type": "string"}}
            for name, field in endpoint.query.model_fields.items()]
    if endpoint.needs_token:
        operation["security"] = [{"apiToken": []}, {}]  # {}: this machine's own clients, or no token set
    return operation


def _profile_servers(prefix: str) -> list[dict[str, Any]]:
    """Where a reader profile's copy of the API is, never naming a key: the document's own folder ('.', as
    OpenAPI resolves a relative url: /r/<key>/ for /r/<key>/openapi.json), then the prefix as a template."""
    return [{"url": ".", "description": "This reader profile's address: where this document was read."},
            {"url": prefix, "description": "A reader profile's address on this server.",
             "variables": {"key": {"default": "KEY", "description": "The profile's key, as its address has it."}}}]


def openapi_document(endpoints: tuple[Endpoint, ...], under: str = "") -> dict[str, Any]:
    """OpenAPI 3.1 description of the API, built from its endpoint table and their models; `under` a
    reader profile's prefix (`/r/{key}`), it names that prefix in `servers` (the bare one names none)."""
    inputs = {model for e in endpoints for model in (e.body, e.query) if model}
    answers = {e.answer for e in endpoints if e.answer} | {e.accepted for e in endpoints if e.accepted} | {ErrorAnswer}
    keyed = [(model, "validation") for model in inputs] + [(model, "serialization") for model in answers]
    refs, definitions = models_json_schema(keyed, ref_template="#/components/schemas/{model}")
    schemas = {model: refs[(model, mode)] for model, mode in keyed}
    paths: dict[str, dict] = {}
    for endpoint in endpoints:
        paths.setdefault(endpoint.path, {})[endpoint.method.lower()] = _operation(endpoint, schemas)
    version = ".".join(map(str, EXTENSION_API_VERSION))
    return {
        "openapi": "3.1.0",
        "info": {"title": "ocr-translate-serve", "version": version,
                 "description": "The ocr_extension API. Every path also answers with or without its final '/'."},
        **({"servers": _profile_servers(under)} if under else {}),
        "paths": paths,
        "components": {
            "schemas": definitions.get("$defs", {}),
            "securitySchemes": {"apiToken": {"type": "http", "scheme": "bearer",
                                             "description": "The server's OCR_SERVE_API_TOKEN."}},
        },
    }
