"""Where each model replica says what it runs on and which models it holds, for `GET /status`.

Serve's own status counts replicas but cannot say which device a replica really uses, nor what it
has loaded; a Serve handle reaches one replica of its choosing. So every model replica reports to
one small named Ray actor, and the ingress reads it, keeping only replicas that are still alive.
"""

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import ray
from ray import serve

log = logging.getLogger(__name__)
BOARD_NAME = "ocr_serve_status_board_v2"
"""A detached actor outlives deploys of new code: a new name when its interface changes."""
NAMESPACE = "serve"
FORGET_AFTER_S = 60


class Reports:
    """The board's state and logic (a plain class, so tests need no Ray)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self.replicas: dict[str, tuple[float, dict[str, Any]]] = {}
        """replica -> (when it last reported, what it reported)"""

    def report(self, replica: str, info: dict[str, Any]) -> None:
        self.replicas[replica] = (self.clock(), info)

    def read(self, alive: set[str]) -> dict[str, dict[str, Any]]:
        """The reports of the replicas in `alive`. Reports of the others are forgotten once they are
        a minute old: a replica that started after `alive` was listed keeps its report."""
        now = self.clock()
        self.replicas = {replica: (at, info) for replica, (at, info) in self.replicas.items()
                         if replica in alive or now - at < FORGET_AFTER_S}
        return {replica: info for replica, (_, info) in self.replicas.items() if replica in alive}


StatusBoard = ray.remote(num_cpus=0)(Reports)


def _board():
    return StatusBoard.options(name=BOARD_NAME, namespace=NAMESPACE, lifetime="detached",
                               get_if_exists=True).remote()


def report(info: dict[str, Any]) -> None:
    """Publish this replica's info (no waiting: status must never slow a model down)."""
    try:
        context = serve.get_replica_context()
        _board().report.remote(context.replica_id.to_full_id_str(), {**info, "app": context.app_name})
    except Exception as exc:  # outside a replica (unit tests), or Ray going down
        log.debug("status not reported: %s", exc)


def _alive() -> set[str]:
    return {actor["name"] for actor in ray.util.list_named_actors(all_namespaces=True)}


async def live_replicas(app_name: str) -> dict[str, dict[str, Any]]:
    """What the running replicas of one application reported, by replica (its actor's name:
    SERVE_REPLICA::app#deployment#id); several applications may share the cluster and the board."""
    reported = await _board().read.remote(await asyncio.to_thread(_alive))
    return {replica: info for replica, info in reported.items() if info["app"] == app_name}


def models_held_by_siblings(deployment: str) -> list[str]:
    """The models the other live replicas of this replica's deployment hold, the most widely held
    first: what a replica that starts while they serve should load before it takes requests."""
    try:
        context = serve.get_replica_context()
        reported = ray.get(_board().read.remote(_alive()))
    except Exception as exc:  # outside a replica (unit tests), or Ray going down
        log.debug("no sibling models read: %s", exc)
        return []
    held = Counter(model_id for info in reported.values()
                   if info["app"] == context.app_name and info["deployment"] == deployment
                   for model_id in info["loaded"])
    return [model_id for model_id, _ in held.most_common()]
