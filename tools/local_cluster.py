"""A real multi-node Ray cluster on one machine (`ray start` processes), with the project deployed by
`serve deploy` from configs/cluster.yaml: a head without model resources and worker nodes with their
own CPU shares and a custom resource each. Used by tests/cluster/test_multinode.py and `make cluster-demo`.

Nodes on one machine share its ports, so each gets free ones of its own, and the one HTTP proxy runs
on the head (proxy_location HeadOnly). Besides paths and ports, the config changes only where the
machine's size demands it: model stages scale to MAX_MODEL_REPLICAS replicas, not eight.
The harness also breaks the cluster as operators see it break: a worker killed, stopped, drained,
started again.
"""

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import yaml
from ray_token import TOKEN_PATH_ENV, bearer, token_environment, token_file

from core.api_tokens import API_TOKEN_FILE_ENV
from deployments.proxy_errors import PROXY_CALLBACK, PROXY_CALLBACK_ENV

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """`count` different ports nothing listens on now: probed all at once, since a port probed and let go
    may be the kernel's next answer too (two of a node's ports once came out the same, and Ray refused)."""
    with contextlib.ExitStack() as held:
        probes = [held.enter_context(socket.socket()) for _ in range(count)]
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in probes]


NODE_PORTS = ("dashboard-agent-listen-port", "dashboard-agent-grpc-port", "runtime-env-agent-port",
              "node-manager-port", "object-manager-port")
"""Ports every node opens: the defaults would collide between nodes on one machine, so each gets free ones."""


MAX_MODEL_REPLICAS = 2
WORKER_CPUS = 1 + 3 * MAX_MODEL_REPLICAS
"""A worker's CPUs: room for an ingress replica and every model stage at its largest, so that either
worker can take over all the other ran (the capacity rule docs/operations.md gives operators)."""


@dataclass
class Node:
    """A node as started: what it takes to start it again (a rejoin) and where it exports its metrics."""
    name: str
    cpus: int
    resources: dict[str, float]
    metrics_port: int = field(default_factory=free_port)

    def arguments(self) -> list[str]:
        return ["--metrics-export-port", str(self.metrics_port),
                *[argument for name, port in zip(NODE_PORTS, free_ports(len(NODE_PORTS)), strict=True)
                  for argument in (f"--{name}", str(port))]]


@dataclass
class LocalCluster:
    temp_dir: Path
    env: dict[str, str]
    gcs_port: int = field(default_factory=free_port)
    dashboard_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    nodes: dict[str, Node] = field(default_factory=dict)
    """The nodes started, by name ("head" and the workers), running or lost."""

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.gcs_port}"

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def api_tokens(self) -> Path:
        """The file of the API tokens every node's ingress reads (OCR_SERVE_API_TOKEN_FILE): rewrite it to
        rotate a token, as a mounted Secret is rewritten on Kubernetes (docs/security.md)."""
        return Path(self.env[API_TOKEN_FILE_ENV])

    @property
    def ray_token(self) -> Path:
        """The file of the cluster's Ray token, which its nodes, dashboard and Ray's CLIs (run with `env`) use."""
        return Path(self.env[TOKEN_PATH_ENV])

    def dashboard(self, path: str, params: dict | None = None, timeout: float = 30):
        """The JSON answer of the dashboard's GET `path`, asked with the cluster's Ray token."""
        response = httpx.get(f"{self.dashboard_url}{path}", params=params, headers=bearer(self.ray_token),
                             timeout=timeout)
        response.raise_for_status()
        return response.json()

    def _ray(self, *arguments: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(BIN / "ray"), *arguments], env=self.env, capture_output=True, text=True,
                              check=True)

    def start_head(self) -> None:
        self._ray("start", "--head", "--port", str(self.gcs_port), "--num-cpus", "0", "--temp-dir",
                  str(self.temp_dir), "--include-dashboard", "true", "--dashboard-host", "127.0.0.1",
                  "--dashboard-port", str(self.dashboard_port), "--ray-client-server-port", str(free_port()),
                  "--disable-usage-stats", *self.nodes.setdefault("head", Node("head", 0, {})).arguments())

    def add_worker(self, name: str, cpus: int, resources: dict[str, float]) -> None:
        """A worker node with `cpus` CPUs, the custom resource `name` (how the harness finds it) and
        `resources` (the software it declares, such as `tesseract`)."""
        node = self.nodes[name] = Node(name, cpus, resources)
        self._start_worker(node)

    def _start_worker(self, node: Node) -> None:
        self._ray("start", "--address", self.address, "--num-cpus", str(node.cpus), "--resources",
                  json.dumps({node.name: 1, **node.resources}), "--temp-dir", str(self.temp_dir),
                  "--disable-usage-stats", *node.arguments())

    def _raylets(self, name: str) -> list[int]:
        """The running raylet of the worker `name`, if it runs (one at most)."""
        resources = f"--static_resource_list={name},".encode()  # how the raylet gets its --resources
        return [pid for pid, command in _processes()
                if command[0].endswith(b"/raylet") and any(part.startswith(resources) for part in command)
                and _running(pid)]

    def kill_worker(self, name: str) -> None:
        """SIGKILL the worker node's raylet and every process under it (its replicas' workers, its
        agents) at once, as a lost machine: nothing of it shuts down cleanly or says goodbye."""
        [raylet] = self._raylets(name)
        for pid in [raylet, *_descendants(raylet)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def stop_worker(self, name: str, timeout_s: float = 60) -> None:
        """Stop the worker node as `ray stop` on its machine does: SIGTERM to its raylet, which ends
        its workers and tells the cluster it leaves. A drained node's raylet may have ended already."""
        deadline = time.monotonic() + timeout_s
        for raylet in self._raylets(name):
            os.kill(raylet, signal.SIGTERM)
            while _running(raylet):
                assert time.monotonic() < deadline, f"{name}'s raylet did not stop within {timeout_s:g} s"
                time.sleep(0.2)

    def drain(self, name: str, deadline_s: int) -> None:
        """Ask Ray to drain the worker `name` as an operator taking its machine out does: no new work
        is placed on it, and Serve moves its replicas before the `deadline_s` Ray is told of."""
        self._ray("drain-node", "--address", self.address, "--node-id", self.node_ids()[name],
                  "--reason", "DRAIN_NODE_REASON_PREEMPTION", "--reason-message", "taken out for maintenance",
                  "--deadline-remaining-seconds", str(deadline_s))

    def rejoin(self, name: str) -> None:
        """Start the lost worker `name` again, as it was (a new Ray node with the same resources)."""
        self._start_worker(self.nodes[name])

    def node_ids(self) -> dict[str, str]:
        """Ray's id of each alive node this harness started, by name (the head's is "head")."""
        nodes = self.dashboard("/api/v0/nodes", {"detail": "true"})
        found = {}
        for node in nodes["data"]["result"]["result"]:
            if node["state"] != "ALIVE":
                continue
            named = [name for name in self.nodes if name in node["resources_total"]]
            found[named[0] if named else "head"] = node["node_id"]
        return found

    def config(self, database_url: str, data_dir: Path, models_dir: Path) -> dict:
        """configs/cluster.yaml as a user deploys it, with this machine's paths and ports, and each
        model stage scaling to MAX_MODEL_REPLICAS replicas: this machine's two cores."""
        config = yaml.safe_load((ROOT / "configs" / "cluster.yaml").read_text())
        config["proxy_location"] = "HeadOnly"
        config["http_options"].update(host="127.0.0.1", port=self.http_port)
        [app] = config["applications"]
        app["args"].update(data_dir=str(data_dir), database_url=database_url)
        app["args"]["weights"]["models_dirs"] = [str(models_dir)]
        for deployment in app["deployments"]:
            if deployment["name"] != "Ingress":
                deployment["autoscaling_config"]["max_replicas"] = MAX_MODEL_REPLICAS
        return config

    def deploy(self, config: dict, path: Path) -> None:
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        subprocess.run([str(BIN / "serve"), "deploy", str(path), "--address", self.dashboard_url], env=self.env,
                       check=True, capture_output=True, text=True)

    def wait_running(self, timeout_s: float = 300) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                status = self.dashboard("/api/serve/applications/", timeout=10)
                app = status.get("applications", {}).get("ocr_translate", {})
                if app.get("status") == "RUNNING":
                    return
            time.sleep(1)
        raise TimeoutError(f"the application did not reach RUNNING in {timeout_s:g} s")

    def stop(self) -> None:
        """End every process of this cluster (their command lines name its folder: `ray stop` would stop
        every Ray of the machine, the tests' own among them), and remove that folder."""
        mine = str(self.temp_dir).encode()
        for pid, command in _processes():
            if pid != os.getpid() and any(mine in part for part in command):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.temp_dir, ignore_errors=True)  # Ray's logs and sockets: hundreds of MB a run


def _processes() -> list[tuple[int, list[bytes]]]:
    """Every process of the machine with its command line (as its arguments)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                if command := (proc / "cmdline").read_bytes().split(b"\0"):
                    found.append((int(proc.name), command))
    return found


def _running(pid: int) -> bool:
    """Whether the process exists and has not ended (a zombie waiting for its parent has)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _descendants(pid: int) -> list[int]:
    """The processes under `pid`, at any depth (from each process's parent in /proc/<pid>/stat)."""
    children: dict[int, list[int]] = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                parent = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(parent, []).append(int(proc.name))
    found, todo = [], [pid]
    while todo:
        below = children.get(todo.pop(), [])
        found.extend(below)
        todo.extend(below)
    return found


def start_three_nodes(folder: Path, database_url: str, api_token: str) -> LocalCluster:
    """A head, `node_a` declaring Tesseract and Apertium, `node_b` Apertium only (WORKER_CPUS each), and
    configs/cluster.yaml deployed on them, running; the tests' cluster and `make cluster-demo`'s.
    Ray's token authentication is on, with a token of the cluster's own in `folder` (ray_auth_token).
    `folder` must have a short path: Ray's socket paths must stay under 108 bytes."""
    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}  # not the caller's Ray
    env = token_environment(env, token_file(folder / "ray_auth_token"))  # nor the caller's Ray token
    tokens = folder / "api-tokens"
    tokens.write_text(f"{api_token}\n")
    tokens.chmod(0o600)
    env.update({"OCR_SERVE_DATABASE_URL": database_url, API_TOKEN_FILE_ENV: str(tokens),
                PROXY_CALLBACK_ENV: PROXY_CALLBACK})
    cluster = LocalCluster(folder / "ray", env)
    try:
        cluster.start_head()
        cluster.add_worker("node_a", WORKER_CPUS, {"tesseract": 1, "apertium": 1})
        cluster.add_worker("node_b", WORKER_CPUS, {"apertium": 1})
        (folder / "models").mkdir()
        cluster.deploy(cluster.config(database_url, folder / "data", folder / "models"), folder / "cluster.yaml")
        cluster.wait_running()
    except BaseException:
        cluster.stop()
        raise
    return cluster


def main() -> None:
    """`make cluster-demo`: the cluster of the tests, for people, with the dashboard and the API on loopback."""
    folder = Path(tempfile.mkdtemp(prefix="ocr-cluster-"))
    database = os.environ.get("OCR_SERVE_DATABASE_URL") or f"sqlite:///{folder}/store.sqlite3"
    token = os.environ.get("OCR_SERVE_API_TOKEN") or "demo-token"
    cluster = start_three_nodes(folder, database, token)
    try:
        print(f"API {cluster.url} (token: {token}, in {cluster.api_tokens}: a line added or removed there "
              f"rotates it), dashboard {cluster.dashboard_url}, store {database}, "
              f"nodes {cluster.node_ids()}.\nRay's token is in {cluster.ray_token}: the dashboard asks for it, and "
              f"Ray's commands read it with `export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH={cluster.ray_token}` "
              f"(`ray status --address {cluster.address}`, `serve status --address {cluster.dashboard_url}`).\n"
              "Ctrl+C stops the cluster.", flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
