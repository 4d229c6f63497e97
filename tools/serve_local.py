"""`make run`: a Serve config (configs/local.yaml) served as `serve run CONFIG` serves it, on a Ray
head this launcher starts for this machine alone and stops when it ends (Ctrl-C, SIGTERM, SIGHUP).

`serve run` alone would start Ray on the machine's network address, its GCS, raylet and workers
listening on every interface. This head's node address is loopback instead, so they listen on
127.0.0.1 only, as do the dashboard and its agent; and Ray's token authentication is on, with a token
of this server's own (tools/ray_token.py), kept in the data folder: what still listens on every
interface (each Serve replica's gRPC server, bound to [::] by Ray's design) refuses calls without it.
tests/cluster/test_control_plane.py checks every listening socket of a server started this way.

    .venv/bin/python tools/serve_local.py [CONFIG] [--http-port PORT] [--dashboard-port PORT] [--temp-dir DIR]
"""

import argparse
import contextlib
import os
import signal
import socket
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

from ray_token import token_environment, token_file  # noqa: E402

from core.settings import default_data_dir  # noqa: E402
from deployments.proxy_errors import PROXY_CALLBACK, PROXY_CALLBACK_ENV  # noqa: E402

TOKEN_FILE_NAME = "ray_auth_token"
"""The Ray token's file in the server's data folder."""
DASHBOARD_PORT = 8265
"""Ray's default, where `serve status` looks without --address."""
LOOPBACK = "127.0.0.1"
SINGLE_MACHINE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
"""0: Ray takes this machine's address to be loopback (what it does on macOS and Windows, where it
runs single-machine clusters), and keeps a node address of 127.0.0.1 as given: the GCS, raylet and
workers then listen on loopback. Otherwise Ray swaps 127.0.0.1 for the machine's network address."""


def port_taken(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind: a closing socket is no conflict
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


def check_ports(ports: dict[tuple[str, int], str]) -> None:
    """Stop with what to do when one of `ports` ((host, port) -> what listens there and how to move it)
    is taken: Ray would move its dashboard elsewhere unasked, and Serve's proxy would fail in a loop."""
    taken = [f"port {port} on {host} ({what}) is taken" for (host, port), what in ports.items()
             if port_taken(host, port)]
    if taken:
        raise SystemExit("Cannot start: " + "; ".join(taken) + ". `ss -ltnp` shows what listens there "
                         "(a server of `make run` already running?).")


def read_config(path: Path, http_port: int | None, folder: Path) -> tuple[Path, dict]:
    """The config file to serve (a copy in `folder` if `http_port` changes it) and its content."""
    config = yaml.safe_load(path.read_text())
    if http_port is not None:
        config.setdefault("http_options", {})["port"] = http_port
        path = folder / path.name
        path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path, config


def data_folder(config: dict) -> Path:
    """Where the app keeps its data: the config's `args.data_dir`, else the default (OCR_SERVE_DATA_DIR)."""
    args = (config.get("applications") or [{}])[0].get("args") or {}
    return Path(args["data_dir"]).expanduser() if args.get("data_dir") else default_data_dir()


def _stop(signum, frame):
    raise KeyboardInterrupt  # what `serve run` answers by shutting Serve down cleanly


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", type=Path, nargs="?", default=ROOT / "configs" / "local.yaml")
    parser.add_argument("--http-port", type=int, help="the API's port (default: the config's http_options.port)")
    parser.add_argument("--dashboard-port", type=int, default=DASHBOARD_PORT)
    parser.add_argument("--temp-dir", help="Ray's folder of sessions and logs (default: Ray's, /tmp/ray)")
    options = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="serve-local-") as folder:
        config_path, config = read_config(options.config.resolve(), options.http_port, Path(folder))
        http = config.get("http_options") or {}
        check_ports({(http.get("host", LOOPBACK), http.get("port", 8000)): "the API: --http-port moves it",
                     (LOOPBACK, options.dashboard_port): "Ray's dashboard: --dashboard-port moves it"})
        token = token_file(data_folder(config) / TOKEN_FILE_NAME)
        environment = token_environment(dict(os.environ), token)
        environment.pop("RAY_ADDRESS", None)  # a head of its own, never a cluster the caller's shell names
        environment.update({SINGLE_MACHINE_ENV: "0", PROXY_CALLBACK_ENV: PROXY_CALLBACK})
        # Before Ray is imported (it reads SINGLE_MACHINE_ENV then); its processes inherit the environment.
        os.environ.clear()
        os.environ.update(environment)
        serve(config_path, options, token)


def serve(config_path: Path, options: argparse.Namespace, token: Path) -> None:
    import click
    import ray
    from ray.serve.scripts import cli

    context = ray.init(_node_ip_address=LOOPBACK, namespace="serve", include_dashboard=True,
                       dashboard_host=LOOPBACK, dashboard_port=options.dashboard_port, _temp_dir=options.temp_dir)
    try:
        if context.address_info["node_ip_address"] != LOOPBACK:  # this Ray ignored SINGLE_MACHINE_ENV
            raise SystemExit(f"Ray took the node address {context.address_info['node_ip_address']}, not "
                             f"{LOOPBACK}: its processes would listen on every interface. Not serving.")
        for signum in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, _stop)
        bin_dir = Path(sys.executable).parent
        address = "" if options.dashboard_port == DASHBOARD_PORT else f" --address http://{LOOPBACK}:{options.dashboard_port}"
        print(f"Ray's token authentication is on: the token is in {token} (mode 0600). Ray's commands need it,\n"
              f"in another terminal:\n"
              f"  export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH={token}\n"
              f"  {bin_dir}/serve status{address}\n"
              f"  {SINGLE_MACHINE_ENV}=0 {bin_dir}/ray status --address {context.address_info['gcs_address']}\n"
              f"The dashboard, http://{LOOPBACK}:{options.dashboard_port}, asks for it: paste the file's content.\n"
              "Ctrl-C stops the server and its Ray processes.", flush=True)
        with contextlib.suppress(KeyboardInterrupt, click.exceptions.Abort):  # Abort: Ctrl-C as `serve run` starts
            cli.main(["run", "--app-dir", str(ROOT), str(config_path)], prog_name="serve", standalone_mode=False)
    finally:
        ray.shutdown()
        print("Ray stopped.", flush=True)


if __name__ == "__main__":
    main()
