"""The FastAPI app of ``ftkit serve``.

``POST /predict``  ``{"inputs": [...]}`` -> ``{"predictions": [...]}``: the JSON objects ``ftkit predict``
                   prints, in order (computed by ``Predictor.predict`` through the dynamic batcher)
``GET /health``    200 ``{"status": "ok"}`` once the model is loaded, 503 ``{"status": "loading"}`` before
``GET /info``      task, labels, base model, ftkit version, max input length, limits, batching counters
``GET /docs``      FastAPI's OpenAPI docs (``/openapi.json``)
``GET /``          a page to try the model by hand (``page.html``: no external assets)

Every error is JSON ``{"error": "<one line>", "type": "...", ...}``: 401 without the API key (when one is
set), 413 past a size limit (``"limit"`` names it), 422 for malformed JSON, wrong fields or types
(``"field"`` names it, e.g. ``inputs[2].context``) and for a record the task rejects (``"field":
"inputs[i]"``), 503 while loading or when the queue is full, 500 (no traceback; the server log has it)
for anything else. No request can stop the worker: predictions run on one thread, every failure is
answered to the request that caused it.
"""

# No `from __future__ import annotations` here: FastAPI reads the endpoint's annotations at runtime,
# and the request model is built per task inside create_app.

import asyncio
import hmac
import logging
import threading
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Optional

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ftkit.errors import FtkitError
from ftkit.serving.batcher import Batcher, Busy
from ftkit.serving.schemas import EXAMPLES, field_path, input_chars, input_model, request_model
from ftkit.version import __version__

log = logging.getLogger("ftkit.serving")


@dataclass(frozen=True)
class ServeOptions:
    """The options of ``ftkit serve`` (flag ``--max-batch-size`` is ``max_batch_size``)."""

    host: str = "127.0.0.1"
    port: int = 8000
    device: str = "auto"
    allow_pickle: bool = False
    #: inputs per model call (dynamic batching)
    max_batch_size: int = 128
    #: how long the first request of a batch waits for others
    max_wait_ms: float = 5.0
    max_body_bytes: int = 1_048_576
    max_inputs: int = 256
    max_input_chars: int = 20_000
    #: inputs waiting for the model before new requests get 503
    max_queue: int = 4096
    api_key: Optional[str] = None
    access_log: bool = True
    #: task options changed for prediction (``--set task_options.KEY=VALUE``)
    task_options: Optional[dict] = None

    def limits(self) -> dict[str, int]:
        return {"max_body_bytes": self.max_body_bytes, "max_inputs": self.max_inputs,
                "max_input_chars": self.max_input_chars, "max_queue": self.max_queue}


FLAGS = {"max_body_bytes": "--max-body-bytes", "max_inputs": "--max-inputs", "max_input_chars": "--max-input-chars",
         "max_queue": "--max-queue"}


def error(status: int, kind: str, message: str, headers: Optional[dict] = None, **extra: Any) -> JSONResponse:
    """The one JSON error shape: ``{"error": message, "type": kind, ...extra}``."""
    return JSONResponse({"error": " ".join(str(message).split()), "type": kind, **extra}, status_code=status,
                        headers=headers)


def limit_error(options: ServeOptions, limit: str, message: str, **extra: Any) -> JSONResponse:
    return error(413, "limit_exceeded", f"{message} (limit {FLAGS[limit]} {options.limits()[limit]})", limit=limit,
                 max=options.limits()[limit], **extra)


class ServerState:
    """What the endpoints share: the model once loaded, the batcher, and how loading went."""

    def __init__(self, model: Path, options: ServeOptions):
        from ftkit.engine.run_folder import task_of

        self.model, self.options = model, options
        # the folder's ftkit.json alone: a folder that is not a model fails here, before the server binds
        self.task, self.facts, self.meta = task_of(model, options.task_options)
        self.predictor = None
        self.status = "loading"
        self.load_error: Optional[BaseException] = None
        self.on_ready: list = []
        self.on_load_error: list = []
        self.batcher = Batcher(self.predict_batch, max_batch_size=options.max_batch_size,
                               max_wait_ms=options.max_wait_ms, max_queue=options.max_queue)

    def load(self, loop: asyncio.AbstractEventLoop) -> None:
        """Load the model on a thread of its own; the server answers /health (503) meanwhile."""
        from ftkit.engine.inference import Predictor

        def work():
            try:
                predictor = Predictor.load(self.model, device=self.options.device,
                                           allow_pickle=self.options.allow_pickle,
                                           task_options=self.options.task_options)
            except BaseException as e:  # noqa: BLE001 - reported on the loop, the server stops
                loop.call_soon_threadsafe(self._failed, e)
                return
            self.warm_up(predictor)
            loop.call_soon_threadsafe(self._ready, predictor)

        threading.Thread(target=work, name="ftkit-load", daemon=True).start()

    def warm_up(self, predictor) -> None:
        """One prediction before the server says it is ready, so the first request does not pay for the
        libraries' lazy set-up (seconds on a CPU)."""
        example = EXAMPLES.get(self.task.name)
        if not example:
            return
        try:
            record = request_model(self.task.name).model_validate({"inputs": example[:1]}).inputs[0].to_record(self.task)
            predictor.predict([record], batch_size=1)
        except Exception as e:  # noqa: BLE001 - a model that cannot predict the example still serves its inputs
            log.warning("warm-up prediction failed: %s", " ".join(str(e).split()))

    def _ready(self, predictor) -> None:
        self.predictor, self.status = predictor, "ok"
        for fn in self.on_ready:
            fn(self)

    def _failed(self, e: BaseException) -> None:
        self.load_error, self.status = e, "error"
        for fn in self.on_load_error:
            fn(self, e)

    def predict_batch(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """One ``Predictor.predict`` call (the model thread): forward passes of inputs of similar length
        (``batched.plan_batches``), outputs in request order."""
        return self.predictor.predict(records, batch_size=self.options.max_batch_size)

    def check_records(self, records: list[dict[str, Any]]) -> Optional[JSONResponse]:
        """The task's own check of predict inputs (``check_predict_records``): a 422 naming the record it rejects."""
        try:
            self.task.check_predict_records(records)
            return None
        except FtkitError as e:
            message = e.one_line()
        index = None
        for i, rec in enumerate(records):  # which one? (checked alone, so its message would say "record 1")
            try:
                self.task.check_predict_records([rec])
            except FtkitError:
                index = i
                break
        extra = {"field": f"inputs[{index}]", "index": index} if index is not None else {}
        return error(422, "invalid_input", message, **extra)

    def info(self) -> dict[str, Any]:
        record, strings = input_model(self.task.name)
        return {
            "task": self.task.name, "labels": list(self.facts.labels), "base_model": self.meta.get("base_model"),
            "ftkit_version": __version__, "model_ftkit_version": self.meta.get("ftkit_version"),
            "max_input_length": self.facts.max_length, "family": self.facts.family,
            "model": str(self.model), "status": self.status,
            "input_fields": list(record.model_fields), "string_inputs": strings,
            "limits": self.options.limits(),
            "batching": {"max_batch_size": self.options.max_batch_size, "max_wait_ms": self.options.max_wait_ms,
                         **self.batcher.stats.as_dict()},
            "api_key": self.options.api_key is not None,
        }


class Guard:
    """ASGI middleware in front of everything: the API key, then the body size limit.

    The key is checked on every request but ``GET /`` (the static try-it page, which asks for the key and
    sends it with its own requests), in constant time. A body is refused past ``max_body_bytes`` from its
    Content-Length before it is read, and a chunked body while it is read.
    """

    def __init__(self, app, options: ServeOptions):
        self.app, self.options = app, options
        self.key = options.api_key.encode() if options.api_key else None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        if self.key is not None and not (scope["path"] == "/" and scope["method"] in ("GET", "HEAD")):
            if not self._authorized(headers):
                response = error(401, "unauthorized", "missing or wrong API key (send 'Authorization: Bearer KEY' "
                                 "or 'X-API-Key: KEY')", headers={"WWW-Authenticate": "Bearer"})
                return await self._refuse(response, scope, receive, send)
        limit = self.options.max_body_bytes
        length = headers.get(b"content-length")
        if length is not None:
            if length.isdigit() and int(length) > limit:
                response = limit_error(self.options, "max_body_bytes", f"the body is {int(length)} bytes")
                return await self._refuse(response, scope, receive, send)
            return await self.app(scope, receive, send)
        if scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        # no Content-Length (chunked): read it here, up to the limit, then replay it to the app
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > limit:
                response = limit_error(self.options, "max_body_bytes", f"the body is more than {limit} bytes")
                return await response(scope, receive, send)
            if not message.get("more_body"):
                break
        body, replayed = b"".join(chunks), False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        return await self.app(scope, replay, send)

    def _authorized(self, headers: dict[bytes, bytes]) -> bool:
        given = headers.get(b"x-api-key")
        auth = headers.get(b"authorization", b"")
        if given is None and auth[:7].lower() == b"bearer ":
            given = auth[7:].strip()
        # compare_digest on bytes of unequal length is still constant-time in the key's content
        return given is not None and hmac.compare_digest(given, self.key)

    @staticmethod
    async def _refuse(response, scope, receive, send, drain: int = 1 << 22):
        """Answer without running the app. A short unread body is drained first, so that a client still
        sending it reads the answer instead of a reset connection; a long one is left (the connection closes)."""
        if scope["method"] not in ("GET", "HEAD"):
            read = 0
            while read <= drain:
                message = await receive()
                if message["type"] != "http.request":
                    break
                read += len(message.get("body", b""))
                if not message.get("more_body"):
                    break
        await response(scope, receive, send)


def create_app(model: str | Path, options: Optional[ServeOptions] = None) -> FastAPI:
    """The app for one model folder (a run folder or an export). The model loads when the app starts
    (its lifespan), on a thread of its own; ``/health`` says when it is ready."""
    options = options or ServeOptions()
    state = ServerState(Path(model), options)
    Request_ = request_model(state.task.name)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await state.batcher.start()
        state.load(asyncio.get_running_loop())
        yield
        await state.batcher.stop()

    app = FastAPI(title=f"ftkit serve: {state.task.name}", version=__version__, lifespan=lifespan,
                  description=f"Predictions of the {state.task.name} model `{Path(model).name}`: the JSON objects "
                              "`ftkit predict` prints, from the same code path.")
    app.state.serve = state
    app.add_middleware(Guard, options=options)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        content_type = request.headers.get("content-type", "")
        if content_type and "json" not in content_type.split(";")[0].lower():
            return error(415, "unsupported_media_type", f"the body must be JSON sent with 'Content-Type: "
                         f"application/json', not '{content_type}'")
        problems = []
        for e in exc.errors():
            loc = tuple(e.get("loc", ()))
            if e.get("type") == "json_invalid":
                where = loc[1] if len(loc) > 1 else "?"
                detail = (e.get("ctx") or {}).get("error", "")
                problems.append({"field": "body", "message": f"malformed JSON at character {where}"
                                 + (f": {detail}" if detail else ""), "type": "json_invalid"})
            else:
                problems.append({"field": field_path(loc), "message": e.get("msg", "invalid"), "type": e.get("type")})
        if not problems:
            problems.append({"field": "body", "message": "invalid request", "type": "invalid"})
        first = problems[0]
        more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
        return error(422, "validation_error", f"{first['field']}: {first['message']}{more}", field=first["field"],
                     errors=problems[:20])

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        kinds = {404: "not_found", 405: "method_not_allowed"}
        message = {404: f"no such endpoint: {request.url.path}",
                   405: f"{request.method} is not allowed on {request.url.path}"}.get(exc.status_code, exc.detail)
        return error(exc.status_code, kinds.get(exc.status_code, "http_error"), message, headers=exc.headers)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception):
        log.error("internal error on %s %s", request.method, request.url.path, exc_info=exc)
        return error(500, "internal_error", "internal error (the server log has the details)")

    @app.post("/predict", summary="Predict", response_description="One JSON object per input, in order")
    async def predict(body: Request_):
        """`{"inputs": [...]}`: the shapes `ftkit predict` reads for this task. Returns `{"predictions": [...]}`."""
        if state.status != "ok":
            return error(503, "not_ready", f"the model is {state.status}", headers={"Retry-After": "1"})
        if len(body.inputs) > options.max_inputs:
            return limit_error(options, "max_inputs", f"{len(body.inputs)} inputs in one request")
        records = [x.to_record(state.task) for x in body.inputs]
        for i, rec in enumerate(records):
            n = input_chars(rec)
            if n > options.max_input_chars:
                return limit_error(options, "max_input_chars", f"inputs[{i}] has {n} characters",
                                   field=f"inputs[{i}]", index=i)
        bad = state.check_records(records)
        if bad is not None:
            return bad
        try:
            outputs = await state.batcher.submit(records)
        except Busy as e:
            return error(503, "busy", f"the server is busy: {e}", headers={"Retry-After": "1"})
        except FtkitError as e:
            return error(422, "invalid_input", e.one_line())
        return JSONResponse({"predictions": outputs})

    @app.get("/health", summary="Readiness")
    async def health():
        """200 `{"status": "ok"}` once the model is loaded; 503 while it loads (or if loading failed)."""
        body = {"status": state.status}
        if state.load_error is not None:
            body["error"] = " ".join(str(state.load_error).split())
        return JSONResponse(body, status_code=200 if state.status == "ok" else 503)

    @app.get("/info", summary="Model and server facts")
    async def info():
        return JSONResponse(state.info())

    page = resources.files("ftkit.serving").joinpath("page.html").read_text(encoding="utf-8")
    csp = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; "
           "img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")

    @app.get("/", include_in_schema=False)
    async def index():
        return HTMLResponse(page, headers={"Content-Security-Policy": csp, "X-Content-Type-Options": "nosniff",
                                           "Cache-Control": "no-cache"})

    return app

