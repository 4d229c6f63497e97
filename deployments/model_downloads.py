"""Where the Hugging Face downloads run in the Serve graph: one detached Ray actor per application.

Why an actor, and not the ingress or the model replicas:
- the ingress may have several replicas, and any of them may get the `set_models` that selects a
  model, or the requests that need it: one actor per application, found by name, runs each
  repository's download once and holds its state, which every ingress replica reads (the 513
  "model is downloading (NN%)" answers, `GET /status`);
- a model replica never downloads: it loads only from a complete snapshot, once the ingress sees the
  download done; and a request that needs a model is never held for minutes by a download;
- detached, it outlives ingress replicas that scale down, are replaced or redeployed, so a download
  keeps running (a new actor after a crash resumes from the cache's complete files);
- `num_cpus=0`: downloading is network and disk work.

It inherits the runtime environment of the ingress replica that creates it (`HF_ENDPOINT`,
`HF_HOME`, `HF_HUB_OFFLINE`), and writes to the Hugging Face cache of its node. Model replicas on
other nodes see those files only through a cache they share (`HF_HOME` on a shared volume): the
cluster configs keep `hub_downloads` off and mount prepared models folders instead.
"""

import logging

import ray

from models_registry import hub_downloads
from models_registry.hub_downloads import Download, DownloadRules, HubDownloads

from .status_board import NAMESPACE

ACTOR_NAME = "ocr_serve_hub_downloads_v2"
"""A detached actor outlives deploys of new code: a new name when its interface changes."""
CALL_TIMEOUT_S = 30


class _LoggingDownloads(HubDownloads):
    """In the actor, the downloads and their progress are logged to its log file (Ray shows it)."""

    def __init__(self):
        if not logging.getLogger().handlers:
            logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        hub_downloads.log.setLevel(logging.INFO)
        super().__init__()


DownloadsActor = ray.remote(num_cpus=0)(_LoggingDownloads)


class ServeDownloads:
    """The application's downloads, through its actor. Blocking calls: the catalogue makes them
    from worker threads, beside the event loop."""

    def __init__(self, app_name: str):
        self.name = f"{ACTOR_NAME}:{app_name}"

    def _existing(self):
        """The actor, or None before the first download (reading the state never starts one)."""
        try:
            return ray.get_actor(self.name, namespace=NAMESPACE)
        except ValueError:
            return None

    def start(self, repo: str, revision: str | None = None, rules: DownloadRules | None = None) -> Download:
        """The rules travel with each call: a redeploy with a new configuration reaches a running actor."""
        actor = DownloadsActor.options(name=self.name, namespace=NAMESPACE, lifetime="detached",
                                       get_if_exists=True).remote()
        return ray.get(actor.start.remote(repo, revision, rules), timeout=CALL_TIMEOUT_S)

    def state(self, repo: str) -> Download | None:
        actor = self._existing()
        return None if actor is None else ray.get(actor.state.remote(repo), timeout=CALL_TIMEOUT_S)

    def states(self) -> dict[str, Download]:
        actor = self._existing()
        return {} if actor is None else ray.get(actor.states.remote(), timeout=CALL_TIMEOUT_S)
