"""`GET /status`: what users of the original most often ask ("is the GPU used?", "why does nothing
happen?") answered on one page: every deployment's replicas, the device each replica really uses
and the models it holds, and every backend family and model with why it is unavailable.
JSON for tools, a small HTML table for a browser.
"""

import asyncio
import html
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from ray import serve

from core.answers import DeploymentInfo, ProfilesStatus, ReplicaInfo, StatusAnswer, selection_answer
from service.service import OcrTranslateService
from service.store import DEFAULT_PROFILE, Store

from . import status_board


def _deployments(app_name: str) -> dict[str, DeploymentInfo]:
    application = serve.status().applications.get(app_name)
    if application is None:
        return {}
    return {name: DeploymentInfo(status=str(getattr(deployment.status, "value", deployment.status)),
                                 replicas={str(getattr(state, "value", state)): count
                                           for state, count in deployment.replica_states.items()})
            for name, deployment in application.deployments.items()}


def profiles_status(store: Store, answered: Mapping[str, int]) -> ProfilesStatus:
    """How many reader profiles there are and are in use, and this replica's requests by kind of path (counts
    only: a profile's name or key would tell the status's readers who reads here)."""
    profiles = [profile for profile in store.profiles() if profile.id != DEFAULT_PROFILE]
    day_ago = datetime.now(UTC) - timedelta(days=1)
    return ProfilesStatus(profiles=len(profiles), requests=dict(answered),
                          used_last_day=sum(bool(profile.last_used and profile.last_used > day_ago)
                                            for profile in profiles))


async def collect(service: OcrTranslateService, answered: Mapping[str, int]) -> StatusAnswer:
    """`answered`: this replica's requests by kind of path (`app.state.answered`)."""
    app_name = serve.get_replica_context().app_name
    deployments, replicas, (selection, models), profiles = await asyncio.gather(
        asyncio.to_thread(_deployments, app_name), status_board.live_replicas(app_name),
        service.catalogue.models_status(), asyncio.to_thread(profiles_status, service.store, answered))
    for replica, info in sorted(replicas.items()):
        deployment = deployments.setdefault(info["deployment"], DeploymentInfo(status="UNKNOWN", replicas={}))
        shown = {key: value for key, value in info.items() if key != "app"}
        deployment.running.append(ReplicaInfo(replica=replica.rsplit("#", 1)[-1], **shown))
    plugins = await service.catalogue.plugin_data()
    return StatusAnswer(deployments=deployments, plugins=plugins.root,
                        selection=selection_answer(selection.lang_src, selection.lang_dst, selection.models),
                        models=models, downloads=await service.catalogue.downloads_status(), profiles=profiles)


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(cell))}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _batching(batching: dict[str, Any] | None) -> str:
    if batching is None:
        return ""
    return f"up to {batching['max_batch_size']}, waits {batching['batch_wait_timeout_s']} s"


def render_html(answer: StatusAnswer) -> str:
    status = answer.model_dump(mode="json")
    replicas = [[name, r["replica"], r["device"],
                 ", ".join(f"{model} ({engine})" for model, engine in r["engines"].items()) or "none",
                 _batching(r.get("batching")),
                 f'{r["node"]} ({r["node_id"][:8]})']
                for name, d in status["deployments"].items() for r in d.get("running", [])]
    plugins = [[name, "yes" if p["installed"] else "no", p["version"] or "", p["warning"] or ""]
               for name, p in status["plugins"].items()]
    unusable = [[model_id, m["kind"], m["reason"]] for model_id, m in status["models"].items() if not m["usable"]]
    selection = [[slot, value or "(not selected)"] for slot, value in status["selection"].items()]
    downloads = [[model_id, d["state"], f"{d['percent']}%", d["bytes"], d["total_bytes"] or "?", d["error"] or ""]
                 for model_id, d in status["downloads"].items()]
    deployments = [[name, d["status"], ", ".join(f"{state}: {n}" for state, n in d["replicas"].items())]
                   for name, d in status["deployments"].items()]
    counts = status["profiles"]
    profiles = [["reader profiles", counts["profiles"]], ["used in the last day", counts["used_last_day"]],
                *([f"requests by {kind} paths (this replica)", n] for kind, n in counts["requests"].items())]
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>ocr-translate-serve status</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;margin-bottom:2em}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left}}</style></head><body>
<h1>ocr-translate-serve</h1>
<h2>Selection</h2>{_table(["slot", "value"], selection)}
<h2>Deployments</h2>{_table(["deployment", "status", "replicas"], deployments)}
<h2>Model replicas</h2>{_table(["deployment", "replica", "device", "loaded models", "batching", "node"], replicas)}
<h2>Plugins</h2>{_table(["family", "enabled", "version", "warning"], plugins)}
<h2>Downloads</h2>{_table(["model", "state", "progress", "bytes", "of", "error"], downloads)}
<h2>Unavailable models</h2>{_table(["model", "kind", "why"], unusable)}
<h2>Reader profiles</h2>{_table(["", "count"], profiles)}
</body></html>"""
