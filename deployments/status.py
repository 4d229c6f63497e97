"""`GET /status`: what users of the original most often ask ("is the GPU used?", "why does nothing
happen?") answered on one page: every deployment's replicas, the device each replica really uses
and the models it holds, and every backend family and model with why it is unavailable.
JSON for tools, a small HTML table for a browser.
"""

import asyncio
import html
from typing import Any

from ray import serve

from core.answers import DeploymentInfo, ReplicaInfo, StatusAnswer, selection_answer
from service.service import OcrTranslateService

from . import status_board


def _deployments(app_name: str) -> dict[str, DeploymentInfo]:
    application = serve.status().applications.get(app_name)
    if application is None:
        return {}
    return {name: DeploymentInfo(status=str(getattr(deployment.status, "value", deployment.status)),
                                 replicas={str(getattr(state, "value", state)): count
                                           for state, count in deployment.replica_states.items()})
            for name, deployment in application.deployments.items()}


async def collect(service: OcrTranslateService) -> StatusAnswer:
    app_name = serve.get_replica_context().app_name
    deployments, replicas, (selection, models) = await asyncio.gather(
        asyncio.to_thread(_deployments, app_name), status_board.live_replicas(app_name),
        service.catalogue.models_status())
    for replica, info in sorted(replicas.items()):
        deployment = deployments.setdefault(info["deployment"], DeploymentInfo(status="UNKNOWN", replicas={}))
        shown = {key: value for key, value in info.items() if key != "app"}
        deployment.running.append(ReplicaInfo(replica=replica.rsplit("#", 1)[-1], **shown))
    plugins = await service.catalogue.plugin_data()
    return StatusAnswer(deployments=deployments, plugins=plugins.root,
                        selection=selection_answer(selection.lang_src, selection.lang_dst, selection.models),
                        models=models, downloads=await service.catalogue.downloads_status())


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
</body></html>"""
