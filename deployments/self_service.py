"""The self-service page, `/profiles/new` (`profiles.self_service`): a reader makes a profile of their own
and gets its address, without the operator. On by default only where the server listens on this machine
alone, so that on a network server the operator decides who may make profiles.

Two guards: a web page may not make one (a cross-site form or fetch: `access.from_web_page`; the POST
also wants a JSON body, which no form sends), and one client address makes at most
`PROFILES_PER_ADDRESS_PER_HOUR` per hour on an ingress replica (the result quota's counting).
"""

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from core.answers import NewProfile
from core.errors import BadRequest, Forbidden, TooManyRequests
from service.off_loop import in_thread
from service.quota import ResultQuota

from . import ui
from .access import from_web_page
from .error_answers import Handler, logged
from .http_api import NewProfileBody
from .http_input import json_body
from .json_answers import answer

PATH = "/profiles/new"
PROFILES_PER_ADDRESS_PER_HOUR = 5
"""Profiles one client address may make here in an hour: a flood of them cannot grow the store."""


def _client(request: Request) -> str:
    return request.client.host if request.client else ""


def _check_cap(quota: ResultQuota, request: Request) -> None:
    """Refuse (429) an address that made its hour's profiles, saying so (the quota's own words are of results)."""
    try:
        quota.check(_client(request))
    except TooManyRequests:
        raise TooManyRequests(f"This address made {PROFILES_PER_ADDRESS_PER_HOUR} profiles in the last hour, the "
                              f"most it may; try again later, or ask the server's operator.") from None


def _maker(quota: ResultQuota) -> Handler:
    """POST /profiles/new {"name": ...}: the new profile's name and path (`/r/<key>`), shown this once."""
    async def make(request: Request) -> Response:
        if from_web_page(request):
            raise Forbidden("Only this server's own page (/profiles/new) makes profiles here, not other web pages.")
        api = request.app.state.api
        body = await json_body(request, NewProfileBody, api.limits)
        _check_cap(quota, request)
        try:
            profile, key = await in_thread(api.profiles.create, body.name)
        except ValueError as exc:
            raise BadRequest(f"{exc}: choose another name.") from None
        quota.charge(_client(request), 1)
        api.audit(request, f"reader profile {profile.name!r} made on the self-service page")
        return answer(NewProfile(name=profile.name, path=f"/r/{key}"))
    return make


def routes() -> list[Route]:
    """The page (the /ui look, its CSP, its script from /ui) and the POST its script sends."""
    return [Route(PATH, ui.page("new_profile.html"), methods=["GET"]),
            Route(PATH, logged(_maker(ResultQuota(PROFILES_PER_ADDRESS_PER_HOUR)), shown=PATH), methods=["POST"])]
