"""Where each model replica says what it runs on and which models it holds, for `GET /status`.

Serve's own status counts replicas but cannot say which device a replica really uses, nor what it
has loaded; a Serve handle reaches one replica of its choosing. So every model replica reports to
one small named Ray actor, and the ingress reads it, keeping only replicas that are still alive.
"""

import asyncio
import logging
from typing import Any

import ray
from ray import serve

log = logging.getLogger(__name__)
BOARD_NAME = "ocr_serve_status_board"
NAMESPACE = "serve"


@ray.remote(num_cpus=0)
class StatusBoard:
    def __init__(self):
        self.replicas: dict[str, dict[str, Any]] = {}

    def report(self, replica: str, info: dict[str, Any]) -> None:
        self.replicas[replica] = info

    def read(self, alive: set[str]) -> dict[str, dict[str, Any]]:
        """The reports of replicas still alive; the others are forgotten."""
        self.replicas = {replica: info for replica, info in self.replicas.items() if replica in alive}
        return self.replicas


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


async def live_replicas(app_name: str) -> dict[str, dict[str, Any]]:
    """What the running replicas of one application reported, by replica (its actor's name:
    SERVE_REPLICA::app#deployment#id); several applications may share the cluster and the board."""
    named = await asyncio.to_thread(ray.util.list_named_actors, all_namespaces=True)
    alive = {actor["name"] for actor in named}
    reported = await _board().read.remote(alive)
    return {replica: info for replica, info in reported.items() if info["app"] == app_name}
