"""A free TCP port, for servers the tests start."""

import socket


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on at `host` right now (the caller binds it soon after)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]
