"""Ray's token authentication for the clusters this project starts on a machine (`make run`, `make
cluster-demo`, the multi-node tests): every Ray process gets RAY_AUTH_MODE=token and a token file of
the cluster's own, mode 0600, named by RAY_AUTH_TOKEN_PATH. Ray reads RAY_AUTH_TOKEN before that file
and ~/.ray/auth_token after it: the environment drops the first, so the second is never read.

With the mode on, Ray's GCS, raylets, workers, dashboard, dashboard agents and Serve replicas' gRPC
servers refuse a caller without the token (gRPC: UNAUTHENTICATED; HTTP: 401, 403 for a wrong one);
Ray's CLIs (`serve status`, `serve deploy`, `ray job submit`, `ray status`) send it when their own
environment has the mode and the token.
"""

import os
import secrets
from pathlib import Path

MODE_ENV = "RAY_AUTH_MODE"
TOKEN_ENV = "RAY_AUTH_TOKEN"
TOKEN_PATH_ENV = "RAY_AUTH_TOKEN_PATH"


def token_file(path: Path) -> Path:
    """The token file at `path`, made the first time with a new random token (256 bits, as Ray's own
    `ray get-auth-token --generate`); an existing one is kept, and made readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        os.chmod(path, 0o600)
        if not path.read_text().strip():
            raise SystemExit(f"The Ray token file {path} is empty: remove it, and a new token is made.") from None
        return path
    with os.fdopen(descriptor, "w") as file:
        file.write(secrets.token_hex(32))
    return path


def token_environment(environment: dict[str, str], path: Path) -> dict[str, str]:
    """`environment` with Ray's token authentication on and the token read from the file `path`."""
    changed = {key: value for key, value in environment.items() if key != TOKEN_ENV}
    changed.update({MODE_ENV: "token", TOKEN_PATH_ENV: str(path)})
    return changed


def bearer(path: Path) -> dict[str, str]:
    """The HTTP header that carries the token of the file `path` (Ray's dashboard reads it)."""
    return {"Authorization": f"Bearer {path.read_text().strip()}"}
