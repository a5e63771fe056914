"""``ftkit serve``: the app on a uvicorn server, bound by us so that a busy port is one clear error."""

from __future__ import annotations

import logging
import socket
import sys
from pathlib import Path

from ftkit.errors import FtkitError
from ftkit.serving.app import ServeOptions, create_app

#: seconds uvicorn waits for in-flight requests after SIGTERM/SIGINT before it cancels them
GRACEFUL_SHUTDOWN_S = 30


def bind(host: str, port: int) -> socket.socket:
    """A listening-ready TCP socket on ``host:port`` (port 0: any free port)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise FtkitError(f"--host {host}: {e.strerror}") from None
    family, _, _, _, address = infos[0]
    # proto must say TCP: asyncio turns Nagle's algorithm off (TCP_NODELAY) only on connections whose socket
    # says so, and with it on, each keep-alive answer waited for the client's delayed ACK (~40 ms)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as e:
        sock.close()
        hint = "choose another --port, or stop the process using it" if e.errno == 98 else None
        raise FtkitError(f"cannot listen on {host}:{port}: {e.strerror}", hint=hint) from None
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def run_server(model: str | Path, options: ServeOptions | None = None) -> None:
    """Serve ``model`` (a run folder or an export) until SIGINT/SIGTERM; in-flight requests are finished first."""
    import uvicorn

    options = options or ServeOptions()
    for name in ("max_batch_size", "max_body_bytes", "max_inputs", "max_input_chars", "max_queue"):
        if getattr(options, name) < 1:
            raise FtkitError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(options, name)}")
    if options.max_wait_ms < 0:
        raise FtkitError(f"--max-wait-ms must be 0 or more, got {options.max_wait_ms}")
    if options.api_key is not None and not options.api_key.strip():
        raise FtkitError("--api-key is empty")
    import datasets

    datasets.disable_progress_bars()  # one "Tokenizing" bar per batch is noise in a server log
    app = create_app(model, options)  # reads the folder's ftkit.json: not a model folder -> one error line
    sock = bind(options.host, options.port)
    url = url_of(sock)
    state = app.state.serve
    config = uvicorn.Config(app, log_level="info", access_log=options.access_log, lifespan="on",
                            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S, server_header=False)
    server = uvicorn.Server(config)
    logger = logging.getLogger("uvicorn.error")

    def ready(state):
        logger.info("ftkit serve: %s (%s, %d labels) ready on %s (docs %s/docs, try it at %s/)", model,
                    state.task.name, len(state.facts.labels), url, url, url)

    def failed(state, e):
        logger.error("ftkit serve: the model did not load: %s", " ".join(str(e).split()))
        server.should_exit = True

    state.on_ready.append(ready)
    state.on_load_error.append(failed)
    print(f"ftkit serve: listening on {url} (loading {model})", file=sys.stderr, flush=True)
    if options.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"ftkit serve: warning: --host {options.host} is reachable from other machines"
              + ("" if options.api_key else "; no --api-key is set, so anyone who can reach it can use it"),
              file=sys.stderr, flush=True)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    if state.load_error is not None:
        e = state.load_error
        raise e if isinstance(e, FtkitError) else FtkitError(f"could not load {model}: {e}") from None
