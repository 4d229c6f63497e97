"""The extension's API, endpoint by endpoint as in extension-api.md: one small handler function each,
and `ENDPOINTS`, the one table that the routes and the OpenAPI description are built from.

A handler reads its request (`http_input`), calls the service's catalogue, pipeline or manual
translations, and shapes the answer; failures are exceptions, answered in `error_answers`. What the
handlers share (the service, the token guard, the limits) is the app's `ApiContext`.
"""

import contextlib
import dataclasses
import functools
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, compile_path
from starlette.types import Scope

from core.answers import (
    Accepted,
    ActiveOptions,
    Done,
    GlossaryAnswer,
    Handshake,
    NewProfile,
    OcrTslAnswer,
    PluginData,
    ProfileDocument,
    ProfileInfo,
    ProfilesAnswer,
    StatusAnswer,
    TranslationsAnswer,
    TslAnswer,
)
from core.api_tokens import audit
from core.errors import BadRequest, Forbidden, NotFound, ServeError
from core.settings import Limits, ProfileSettings
from service.jobs import Overrides
from service.observe import metered
from service.off_loop import in_thread
from service.profiles import Profiles, Reader
from service.quota import ResultQuota
from service.service import OcrTranslateService
from service.store import DEFAULT_PROFILE, Profile

from . import status as status_report
from .access import TokenGuard, asked_by_a_page
from .error_answers import Handler, logged
from .http_api import (
    OPENAPI_PATH,
    Endpoint,
    GlossaryDeleteBody,
    GlossaryQuery,
    GlossaryTermBody,
    ImportProfileBody,
    ManagePluginsBody,
    ManualTranslationBody,
    NewProfileBody,
    ProfileNameBody,
    RunOcrTslBody,
    RunTslBody,
    SetLangBody,
    SetModelsBody,
    TextQuery,
    XuaQuery,
    openapi_document,
)
from .http_input import json_body, query
from .json_answers import answer

DEFAULT_READER = Reader(DEFAULT_PROFILE, "default")
"""Whom the bare paths serve."""


@dataclass
class ApiContext:
    """What every handler of one app works with."""

    service: OcrTranslateService
    guard: TokenGuard
    limits: Limits
    quota: ResultQuota
    profiles: Profiles
    profile_quota: ResultQuota
    """The new results of each reader profile (`profiles.max_new_results_per_hour`), by profile id."""

    @classmethod
    def of(cls, service: OcrTranslateService, guard: TokenGuard, limits: Limits,
           bounds: ProfileSettings | None = None) -> "ApiContext":
        per_profile = (bounds or ProfileSettings()).max_new_results_per_hour
        return cls(service, guard, limits, ResultQuota(limits.max_new_results_per_client_per_hour),
                   Profiles(service.store),
                   ResultQuota(per_profile, whose="This reader profile", most="one profile (its hour's share)"))

    async def profile_of(self, scope: Scope) -> Reader | None:
        """The reader profile a request's path names (`/r/<key>/...`), found before routing: the in-flight
        limit counts a profile's requests wherever they come from. The answer (None: a key no profile
        has) is kept in the request's state, so `reader` does not look it up again. None for the bare
        paths, and when the store cannot be asked: the handler asks again and answers why."""
        match = _PROFILE_PATH.match(scope["path"].removeprefix(scope.get("root_path", "")))
        if match is None:
            return None
        try:
            found = await in_thread(self.profiles.find, match["key"])
        except ServeError:
            return None
        scope.setdefault("state", {})[_READER_STATE] = found
        return found

    async def reader(self, request: Request) -> Reader:
        """The profile the request's address names (`/r/<key>/...`), or the default one (the bare paths)."""
        key = request.path_params.get("key")
        if key is None:
            return DEFAULT_READER
        state = request.scope.get("state", {})
        found = state[_READER_STATE] if _READER_STATE in state else await in_thread(self.profiles.find, key)
        if found is None:
            raise NotFound("No reader profile has this address: it was revoked, or mistyped. Ask the server's "
                           "operator for yours.")
        return found

    def overrides(self, request: Request, body: RunTslBody | RunOcrTslBody, reader: Reader) -> Overrides:
        return dataclasses.replace(body.overrides(), any_model=self.guard.permits(request), profile=reader.profile)

    def audit(self, request: Request, change: str, reader: Reader = DEFAULT_READER) -> None:
        if reader.profile == DEFAULT_PROFILE:
            audit.info("%s by %s", change, self.guard.who(request))
        else:
            audit.info("%s by %s of profile %s", change, self.guard.who(request, by_key=True), reader.short_id)

    @contextlib.contextmanager
    def within_quota(self, request: Request, reader: Reader) -> Iterator[None]:
        """The new results a client without the token had computed, counted against its hour's share
        (`limits.max_new_results_per_client_per_hour`), or under a reader profile's address against the
        profile's (`profiles.max_new_results_per_hour`, wherever its requests come from); past it, a
        request that needs a model is refused (429) before the model runs, and stored results are still
        answered."""
        if self.guard.permits(request):
            yield
            return
        if reader.profile == DEFAULT_PROFILE:
            quota, charged = self.quota, request.client.host if request.client else ""
        else:
            quota, charged = self.profile_quota, str(reader.profile)
        with metered(lambda: quota.check(charged)) as work:
            try:
                yield
            finally:
                quota.charge(charged, work.results)


def _context(request: Request) -> ApiContext:
    return request.app.state.api


def _digest(text: str) -> str:
    """A reader's text in the audit log: which one, not what it says."""
    return hashlib.sha256(text.encode()).hexdigest()[:10]


# -- the handlers, in the order of the table ---------------------------------------------------------
async def handshake(request: Request) -> Response:
    api = _context(request)
    return answer(await api.service.catalogue.handshake((await api.reader(request)).profile))


async def set_lang(request: Request) -> Response:
    api = _context(request)
    reader = await api.reader(request)
    body = await json_body(request, SetLangBody, api.limits)
    await api.service.catalogue.set_lang(body.lang_src, body.lang_dst, reader.profile)
    api.audit(request, f"languages set to {body.lang_src}->{body.lang_dst}", reader)
    return answer(Done())


async def set_models(request: Request) -> Response:
    api = _context(request)
    reader = await api.reader(request)
    body = await json_body(request, SetModelsBody, api.limits)
    chosen = body.models()
    downloading = await api.service.catalogue.set_models(chosen, reader.profile)
    api.audit(request, "models set to " + ", ".join(f"{kind} {model}" for kind, model in chosen if model), reader)
    return answer(Done()) if downloading is None else answer(Accepted(message=downloading), 202)


async def run_ocrtsl(request: Request) -> Response:
    api = _context(request)
    reader = await api.reader(request)
    body = await json_body(request, RunOcrTslBody, api.limits)
    with api.within_quota(request, reader):
        result = await api.service.pipeline.run_ocrtsl(
            contents=body.contents, md5=body.md5, force=body.force, given_options=body.options,
            overrides=api.overrides(request, body, reader))
    return answer(OcrTslAnswer(result=result))


async def run_tsl(request: Request) -> Response:
    api = _context(request)
    reader = await api.reader(request)
    body = await json_body(request, RunTslBody, api.limits)
    with api.within_quota(request, reader):
        text = await api.service.pipeline.run_tsl(body.text, api.overrides(request, body, reader), body.options)
    return answer(TslAnswer(text=text))


async def run_tsl_xua(request: Request) -> Response:
    if asked_by_a_page(request):  # an <img src> or a link on some web page
        raise Forbidden("run_tsl_xua answers programs (XUnity.AutoTranslator), not web pages.")
    api = _context(request)
    reader = await api.reader(request)
    asked = query(request, XuaQuery)
    with api.within_quota(request, reader):
        text = await api.service.pipeline.run_tsl(
            asked.text, Overrides(lang_src=asked.from_, lang_dst=asked.to, profile=reader.profile), None)
    return PlainTextResponse(text, media_type="text/plain; charset=utf-8")


async def get_trans(request: Request) -> Response:
    api = _context(request)
    reader = await api.reader(request)
    asked = query(request, TextQuery)
    return answer(TranslationsAnswer(translations=await api.service.manual.get_translations(asked.text,
                                                                                            reader.profile)))


async def set_manual_translation(request: Request) -> Response:
    api = _context(request)
    reader = await api.reader(request)
    body = await json_body(request, ManualTranslationBody, api.limits)
    await api.service.manual.set_manual_translation(body.text, body.translation, reader.profile)
    api.audit(request, f"manual translation of text {_digest(body.text)} set", reader)
    return answer(Done())


async def get_glossary(request: Request) -> Response:
    api = _context(request)
    reader = await api.reader(request)
    asked = query(request, GlossaryQuery)
    return answer(await api.service.manual.glossary(asked.lang_src, asked.lang_dst, reader.profile))


async def set_glossary_term(request: Request) -> Response:
    api = _context(request)
    reader = await api.reader(request)
    body = await json_body(request, GlossaryTermBody, api.limits)
    await api.service.manual.set_glossary_term(body.term, body.translation, body.lang_src, body.lang_dst,
                                               reader.profile)
    api.audit(request, f"glossary term {_digest(body.term)} set", reader)
    return answer(Done())


async def delete_glossary_term(request: Request) -> Response:
    api = _context(request)
    reader = await api.reader(request)
    body = await json_body(request, GlossaryDeleteBody, api.limits)
    await api.service.manual.delete_glossary_term(body.term, body.lang_src, body.lang_dst, reader.profile)
    api.audit(request, f"glossary term {_digest(body.term)} deleted", reader)
    return answer(Done())


async def get_active_options(request: Request) -> Response:
    api = _context(request)
    return answer(await api.service.catalogue.active_options((await api.reader(request)).profile))


async def status(request: Request) -> Response:
    report = await status_report.collect(_context(request).service, request.app.state.answered)
    if "text/html" in request.headers.get("accept", ""):
        return HTMLResponse(status_report.render_html(report))
    return answer(report)


async def get_plugin_data(request: Request) -> Response:
    return answer(await _context(request).service.catalogue.plugin_data())


async def manage_plugins(request: Request) -> Response:
    api = _context(request)
    body = await json_body(request, ManagePluginsBody, api.limits)
    await api.service.catalogue.manage_plugins(body.plugins)
    api.audit(request, "plugins " + ", ".join(f"{name} {'on' if on else 'off'}"
                                              for name, on in sorted(body.plugins.items())))
    return answer(Done())


def _shown(moment) -> str | None:
    return moment.isoformat(timespec="seconds") if moment else None


async def list_profiles(request: Request) -> Response:
    profiles = await in_thread(_context(request).service.store.profiles)
    return answer(ProfilesAnswer(profiles=[ProfileInfo(name=profile.name, created=_shown(profile.created),
                                                       last_used=_shown(profile.last_used)) for profile in profiles]))


async def create_profile(request: Request) -> Response:
    api = _context(request)
    body = await json_body(request, NewProfileBody, api.limits)
    return await _made(request, lambda: api.profiles.create(body.name), "made")


async def _made(request: Request, make: Callable[[], tuple[Profile, str]], how: str) -> Response:
    """A new profile's answer, its address shown this once (a made or an imported one); a name that is
    taken or too long refused."""
    try:
        profile, key = await in_thread(make)
    except ValueError as exc:
        raise BadRequest(f"{exc}: choose another name.") from None
    _context(request).audit(request, f"reader profile {profile.name!r} {how}")
    return answer(NewProfile(name=profile.name, path=f"/r/{key}"))


async def export_profile(request: Request) -> Response:
    api = _context(request)
    asked = query(request, ProfileNameBody)
    document = await in_thread(api.profiles.export, asked.name)
    if document is None:
        raise NotFound(f"No reader profile is named {asked.name!r}.")
    api.audit(request, f"reader profile {asked.name!r} exported")
    return answer(document)


async def import_profile(request: Request) -> Response:
    api = _context(request)
    body = await json_body(request, ImportProfileBody, api.limits)
    caps = api.service.manual.profiles  # the operator's bounds on what one profile keeps
    return await _made(request, lambda: api.profiles.import_document(body.profile, body.name, caps),
                       f"imported from an export of {body.profile.name!r}")


async def revoke_profile(request: Request) -> Response:
    api = _context(request)
    body = await json_body(request, ProfileNameBody, api.limits)
    if not await in_thread(api.profiles.revoke, body.name):
        raise NotFound(f"No reader profile is named {body.name!r} (the default profile cannot be revoked).")
    api.audit(request, f"reader profile {body.name!r} revoked")
    return answer(Done())


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("/", "GET", handshake, "Languages, models and the current selection.", Handshake),
    Endpoint("/set_lang/", "POST", set_lang, "Select the source and target languages.", Done,
             body=SetLangBody, needs_token=True, readers_own=True),
    Endpoint("/set_models/", "POST", set_models, "Select (and load) the box, OCR and translation models.", Done,
             body=SetModelsBody, errors=(429,), needs_token=True, readers_own=True, accepted=Accepted),
    Endpoint("/run_ocrtsl/", "POST", run_ocrtsl, "Find, read and translate the text of an image.", OcrTslAnswer,
             body=RunOcrTslBody, errors=(401, 403, 406, 429, 502, 504, 512, 513)),
    Endpoint("/run_tsl/", "POST", run_tsl, "Translate a text.", TslAnswer, body=RunTslBody,
             errors=(401, 403, 429, 502, 504, 512, 513)),
    Endpoint("/run_tsl_xua", "GET", run_tsl_xua, "Translate a text, answered as plain text (XUnity).", None,
             query=XuaQuery, errors=(400, 403, 429, 502, 504, 512, 513)),
    Endpoint("/get_trans/", "GET", get_trans, "Every stored translation of a text.", TranslationsAnswer,
             query=TextQuery, errors=(400, 404, 512)),
    Endpoint("/set_manual_translation/", "POST", set_manual_translation, "Store a user's own translation.",
             Done, body=ManualTranslationBody, errors=(404, 512), needs_token=True, readers_own=True),
    Endpoint("/get_glossary/", "GET", get_glossary, "The reader's glossary of a language pair.", GlossaryAnswer,
             query=GlossaryQuery, errors=(400, 512)),
    Endpoint("/set_glossary_term/", "POST", set_glossary_term,
             "Add a term to a language pair's glossary (or change its translation): every model follows it.",
             Done, body=GlossaryTermBody, errors=(512,), needs_token=True, readers_own=True),
    Endpoint("/delete_glossary_term/", "POST", delete_glossary_term, "Remove a term from a glossary.",
             Done, body=GlossaryDeleteBody, errors=(404, 512), needs_token=True, readers_own=True),
    Endpoint("/get_active_options/", "GET", get_active_options, "The selected models' options.", ActiveOptions),
    Endpoint("/get_plugin_data/", "GET", get_plugin_data, "The backend families and their state.", PluginData),
    Endpoint("/manage_plugins/", "POST", manage_plugins, "Enable or disable backend families.", Done,
             body=ManagePluginsBody, needs_token=True),
    Endpoint("/status", "GET", status, "Replicas, the device each uses, loaded models, unavailable models.",
             StatusAnswer, html=True, needs_token=True),
    Endpoint("/profiles/", "GET", list_profiles, "The reader profiles (docs/profiles.md).", ProfilesAnswer,
             needs_token=True),
    Endpoint("/profiles/", "POST", create_profile, "Make a reader profile: its address, shown once.", NewProfile,
             body=NewProfileBody, needs_token=True),
    Endpoint("/profiles/revoke/", "POST", revoke_profile, "Delete a reader profile and everything it kept.", Done,
             body=ProfileNameBody, errors=(404,), needs_token=True),
    Endpoint("/profiles/export/", "GET", export_profile,
             "A reader profile's selection, per-language model choices, manual translations and glossary (never its "
             "key), for an import.",
             ProfileDocument, query=ProfileNameBody, errors=(400, 404), needs_token=True),
    Endpoint("/profiles/import/", "POST", import_profile,
             "Make a reader profile from an export, with a new key: its address, shown once.", NewProfile,
             body=ImportProfileBody, needs_token=True),
)


@functools.cache
def _openapi(under: str) -> Handler:
    """GET /openapi.json as served `under` a prefix: the description names it (built once per prefix)."""
    document = openapi_document(ENDPOINTS, under)

    async def openapi(request: Request) -> Response:
        return JSONResponse(document)
    return openapi


PROFILE_PREFIX = "/r/{key}"
"""Where a reader profile's copy of the API is: its key in the path, as the extension builds every call
from the server address the reader typed."""
_PROFILE_PATH = compile_path(PROFILE_PREFIX + "/{path:path}")[0]
"""A path under a profile's prefix, as its Mount matches it."""
_READER_STATE = "reader"
"""Where `ApiContext.profile_of` leaves the profile it found, in the request's scope."""


def routes(guard: TokenGuard, under: str = "") -> list[Route]:
    """The table as routes, each path with and without its final '/'; the token-guarded ones checked first.
    `under` a profile's prefix, the endpoints that change only the profile's own settings need its key alone."""
    found = [Route(OPENAPI_PATH, logged(_openapi(under), shown=under + OPENAPI_PATH), methods=["GET"])]
    for endpoint in ENDPOINTS:
        checked = endpoint.needs_token and not (under and endpoint.readers_own)
        handler = logged(endpoint.handler, guard if checked else None, shown=under + endpoint.path)
        bare = endpoint.path.rstrip("/")
        for variant in {bare or "/", bare + "/"}:
            found.append(Route(variant, handler, methods=[endpoint.method]))
    return found
