"""An ASGI app served by uvicorn in a thread of the test process, over real HTTP, for as long as a
`with` block runs (the ingress's HTTP app without Ray: the security tests' servers)."""

import contextlib
import threading
import time
from collections.abc import Iterator

from .ports import free_port


@contextlib.contextmanager
def serving(app, host: str = "127.0.0.1") -> Iterator[int]:
    """The port `app` answers on at `host` (`0.0.0.0`: every address of this machine)."""
    import uvicorn

    port = free_port(host)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=30)
