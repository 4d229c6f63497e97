"""An ASGI app served by uvicorn in a thread of the test process, over real HTTP, for as long as a
`with` block runs (the ingress's HTTP app without Ray: the security tests' servers)."""

import contextlib
import threading
from collections.abc import Iterator

from .ports import free_port
from .waiting import wait_for


@contextlib.contextmanager
def serving(app, host: str = "127.0.0.1") -> Iterator[int]:
    """The port `app` answers on at `host` (`0.0.0.0`: every address of this machine)."""
    import uvicorn

    port = free_port(host)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started or not thread.is_alive(), 30, "uvicorn starting", interval_s=0.05)
    assert server.started, "uvicorn did not start"
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=30)
