"""The ingress's HTTP application: the API's routes and the /ui page behind CORS, the in-flight limit
and the allowed host names. Serve-free, so tests serve it with uvicorn in process."""

import logging
from collections import Counter

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.routing import Mount

from core.api_tokens import ApiTokens
from core.settings import AppArgs
from service.service import OcrTranslateService

from . import handlers, self_service, ui
from .access import TokenGuard
from .backpressure import InFlight, InFlightLimit
from .error_answers import PATH_KINDS, routing_error

log = logging.getLogger("ray.serve")


def build_http_app(service: OcrTranslateService, args: AppArgs, http_host: str = "127.0.0.1") -> Starlette:
    """`http_host`: where the server listens (the ingress asks Serve), which decides whether the
    self-service page is on by default (`profiles.self_service`)."""
    if risk := args.security.relay_risk():
        log.warning(risk)
    guard = TokenGuard(ApiTokens.from_environment(), args.security.token_required_from)
    in_flight = InFlight()
    api = handlers.ApiContext.of(service, guard, args.limits, args.profiles)
    app = Starlette(
        # the web page at /ui: static, same origin, its own CSP; under /r/<key>/, a reader profile's API and page
        routes=[*handlers.routes(guard), *ui.routes(),
                *(self_service.routes() if args.profiles.self_service_on(http_host) else []),
                Mount(handlers.PROFILE_PREFIX,
                      routes=[*handlers.routes(guard, under=handlers.PROFILE_PREFIX), *ui.routes()])],
        middleware=[
            Middleware(  # outermost, so that 503s carry CORS headers too
                CORSMiddleware,
                allow_origins=args.cors.allow_origins,
                allow_origin_regex=args.cors.allow_origin_regex,
                allow_methods=["GET", "POST", "OPTIONS"],
                allow_headers=["Content-Type", "Authorization", "X-Request-Id"],
                expose_headers=["X-Request-Id", "Retry-After"],
            ),
            # before the in-flight limit: a request to a host name not allowed looks up no profile's key
            Middleware(TrustedHostMiddleware, allowed_hosts=args.security.allowed_hosts),
            Middleware(InFlightLimit, limit=args.limits.max_requests_in_flight,
                       per_client=args.limits.max_requests_in_flight_per_client,
                       per_profile=args.profiles.max_requests_in_flight, counts=in_flight,
                       profile_of=api.profile_of),
        ],
        exception_handlers={HTTPException: routing_error},
    )
    app.state.api = api
    app.state.in_flight = in_flight
    app.state.answered = Counter(dict.fromkeys(PATH_KINDS, 0))
    return app
