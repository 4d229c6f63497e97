"""Ingress: the Serve deployment that holds the service (store, registry, pipeline) and serves the
extension's HTTP API (`http_app.py`, its routes in `handlers.py`) to every client.
"""

import asyncio
from typing import Any

from ray import serve
from ray.serve.handle import DeploymentHandle
from starlette.applications import Starlette

from core.api_tokens import ApiTokens
from core.settings import AppArgs, token_problem
from models_registry import Registry
from service.observe import Observer
from service.service import OcrTranslateService
from service.store import Selection, Store

from . import metrics
from .http_app import build_http_app
from .model_downloads import ServeDownloads
from .stage_handles import ServeStages


class ServeMetrics(Observer):
    """The service's observations, as Ray Serve metrics."""

    def stage_done(self, stage: str, model_id: str, seconds: float, items: int) -> None:
        super().stage_done(stage, model_id, seconds, items)
        metrics.stage_timed(stage, model_id, seconds)

    def cache_lookup(self, stage: str, hits: int, misses: int) -> None:
        metrics.cache_looked_up(stage, hits, misses)


async def _http_host() -> str:
    """The address Serve's HTTP proxies listen on (`http_options.host`), from the Serve controller."""
    from ray.serve.context import _get_global_client

    return (await _get_global_client()._controller.get_http_config.remote()).host


@serve.deployment
@serve.ingress()
class Ingress:
    async def __init__(self, args: AppArgs, box: DeploymentHandle, ocr: DeploymentHandle, tsl: DeploymentHandle):
        self.http_host = await _http_host()
        if problem := token_problem(self.http_host, ApiTokens.from_environment().configured):
            raise RuntimeError(problem)  # the replica fails, and `serve run` / `serve status` show why
        self.args = args
        self.store = Store(args.resolved_database_url)
        self.registry = Registry.load(args.registry_dirs, args.weight_sources, args.model_settings)
        self.service = OcrTranslateService(self.store, self.registry, ServeStages(box, ocr, tsl), args.limits,
                                           ServeMetrics(), args.security,
                                           args.retention, args.coalescing.across_replicas,
                                           downloads=ServeDownloads(serve.get_replica_context().app_name)
                                           if args.weights.hub_downloads else None, profiles=args.profiles)
        self._maintenance = asyncio.create_task(
            self.service.pipeline.retention.run(args.profiles.expire_after_days))
        defaults = args.default_selection
        self.service.catalogue.start_with_defaults(Selection(defaults.lang_src, defaults.lang_dst, defaults.models))
        if args.preload_selected_models:  # in the background: the API answers meanwhile
            self._preloading = asyncio.create_task(self.service.catalogue.preload_selection())

    def __serve_build_asgi_app__(self) -> Starlette:
        self._app = build_http_app(self.service, self.args, self.http_host)
        return self._app

    def stats(self) -> dict[str, Any]:
        """The requests this replica works on now, in all, per client address and per reader profile's
        short id (the in-flight limit's counts): what a test waits on before it counts answers."""
        in_flight = self._app.state.in_flight
        return {"in_flight": in_flight.total, "in_flight_by_client": dict(in_flight.by_client),
                "in_flight_by_profile": dict(in_flight.by_profile)}
