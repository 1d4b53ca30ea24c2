"""The HTTP app: ``POST /api/tag``, ``GET /api/model``, ``GET /healthz``, a web page at ``/``
and offline API docs at ``/docs`` (Swagger UI served from ``static/``, no CDN).

The model is loaded once, when the app is made. Tagging runs in a small pool of threads
(torch releases the GIL), fed by a micro-batcher: requests that arrive together, or pile up
while the workers are busy, are tagged in one call; a slow request holds one worker only.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import json
import logging
import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable, Sequence
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from nerbilstm import __version__
from nerbilstm.errors import NerError
from nerbilstm.io import finite_json

log = logging.getLogger("nerbilstm.serve")

STATIC_DIR = Path(__file__).parent / "static"
DEFAULT_MAX_BODY_BYTES = 100_000

# Descriptions of the entity types we know; /api/model gives the loaded model's (a bare name otherwise).
ENTITY_TYPES = {
    "geo": "Geographical entity",
    "org": "Organization",
    "per": "Person",
    "gpe": "Geopolitical entity",
    "tim": "Time indicator",
    "art": "Artifact",
    "eve": "Event",
    "nat": "Natural phenomenon",
    "PER": "Person",
    "LOC": "Location",
    "ORG": "Organization",
    "MISC": "Miscellaneous entity",
}
MAX_NBEST = 100

# The page loads nothing from elsewhere and runs no inline script; /docs is left out of this
# (Swagger UI's start-up script is inline) but also loads only our own files.
PAGE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


# ----------------------------------------------------------------------------- schemas


class TagRequest(BaseModel):
    """Exactly one of ``text`` (one text) or ``texts`` (a list of texts)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"text": "Prime Minister Gordon Brown met U.S. President Barack Obama in London on Tuesday."},
        {"texts": ["Angela Merkel visited Paris.", "The United Nations met in New York on Friday."]},
    ]})

    text: str | None = Field(None, description="one text to tag")
    texts: list[str] | None = Field(None, description="several texts to tag, each on its own")
    nbest: int = Field(0, ge=0, le=MAX_NBEST, description="K > 0: each sentence also carries its K best tag "
                                                          "sequences with their probabilities (CRF models only)")

    @model_validator(mode="after")
    def _exactly_one(self) -> "TagRequest":
        if (self.text is None) == (self.texts is None):
            raise ValueError("give exactly one of 'text' (a string) or 'texts' (a list of strings)")
        return self


class TokenOut(BaseModel):
    text: str
    start: int = Field(description="character offset of the token in its text (Unicode code points)")
    end: int = Field(description="offset just past the token")
    tag: str = Field(description="IOB2 tag, e.g. B-geo")
    prob: float = Field(description="marginal probability of the tag")


class EntityOut(BaseModel):
    text: str = Field(description="text[start:end]")
    label: str = Field(description="entity type: geo, org, per, gpe, tim, art, eve or nat for GMB models")
    start: int = Field(description="character offset of the entity in its text (Unicode code points)")
    end: int = Field(description="offset just past the entity")
    score: float = Field(description="confidence: the lowest marginal probability among its tokens")


class PathOut(BaseModel):
    tags: list[str] = Field(description="one IOB2 tag per token of the sentence")
    prob: float = Field(description="probability of this tag sequence")


class SentenceOut(BaseModel):
    start: int
    end: int
    score: float | None = Field(description="model score of the decoded tag path")
    nbest: list[PathOut] | None = Field(None, description="with nbest K in the request: the K best tag sequences")


class DocOut(BaseModel):
    text: str
    tokens: list[TokenOut]
    entities: list[EntityOut]
    sentences: list[SentenceOut]


class TagResponse(BaseModel):
    results: list[DocOut] = Field(description="one result per text, in request order "
                                              "(a one-element list for a request with 'text')")


class ErrorOut(BaseModel):
    error: str
    detail: list[dict[str, Any]] | None = Field(None, description="validation errors (422 only)")


# ----------------------------------------------------------------------------- micro-batching


@dataclass
class _Job:
    texts: list[str]
    future: asyncio.Future
    chars: int
    nbest: int = 0


class TooManyTokens(Exception):
    """A request whose texts have more tokens than the server's budget per request (answered 413)."""


class MicroBatcher:
    """Run ``tag(texts) -> docs`` for concurrent requests in a pool of ``workers`` threads,
    putting requests that wait at the same time into one call.

    A request waits up to ``window_s`` for company while a worker is free; while all workers
    are busy requests queue, and the queue leaves (up to ``max_texts`` texts or ``max_chars``
    characters a call, at least one request) as soon as a worker frees. Requests of at most
    ``small_chars`` characters (a bound on their tokens) go first, in calls of at most
    ``small_chars * 8`` characters, and bigger ones never hold more than ``workers - 1``
    workers, so a small request is not queued behind big ones. A request whose client has gone
    is dropped from the queue. ``finish(docs)`` runs in the worker thread on each request's
    share of the output (here: JSON encoding, so big responses are not encoded on the event
    loop). A request with more than ``max_tokens`` tokens (counted by ``count_tokens``) fails
    with TooManyTokens, untagged. A failing batch is retried request by request, so one bad
    request fails alone.
    """

    def __init__(self, tag: Callable[[list[str]], list[dict]], finish: Callable[[list[dict]], Any],
                 workers: int, window_s: float = 0.001, max_texts: int = 64, max_chars: int = 50_000,
                 small_chars: int = 2_000, max_tokens: int | None = None,
                 count_tokens: Callable[[list[str]], int] | None = None):
        self._tag = tag
        self._finish = finish
        self.workers = max(1, int(workers))
        self.window_s = max(0.0, float(window_s))
        self.max_texts = max(1, int(max_texts))
        self.max_chars = max(1, int(max_chars))
        self.small_chars = max(0, int(small_chars))
        self.max_tokens = None if max_tokens is None else int(max_tokens)
        self._count_tokens = count_tokens
        self._executor: ThreadPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._small: deque[_Job] = deque()
        self._large: deque[_Job] = deque()
        self._busy = self._busy_large = 0
        self._timer: asyncio.Handle | None = None
        self.calls = 0  # tagger calls made, for tests and curiosity
        self.batched_requests = 0

    async def submit(self, texts: list[str], gone: Awaitable | None = None, nbest: int = 0) -> Any:
        """The finished output for ``texts``. ``gone``: completes when the client disconnects;
        the request is then dropped (if not being tagged yet) and ClientGone raised. ``nbest`` > 0:
        tagged with ``tag(texts, nbest)``, in a call only with requests of the same ``nbest``."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # first request, or a new event loop (test clients start their own)
            self._loop, self._small, self._large, self._timer = loop, deque(), deque(), None
            self._busy = self._busy_large = 0
        job = _Job(texts, loop.create_future(), sum(len(t) for t in texts), nbest)
        (self._small if job.chars <= self.small_chars else self._large).append(job)
        if self._busy < self.workers and self._timer is None:
            self._timer = loop.call_later(self.window_s, self._on_timer)
        if gone is None:
            return await job.future
        watcher = asyncio.ensure_future(gone)
        try:
            await asyncio.wait({job.future, watcher}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            watcher.cancel()
        if not job.future.done():
            job.future.cancel()  # left in the queue: skipped when its turn comes
            raise ClientGone()
        return job.future.result()

    def shutdown(self) -> None:
        """Stop the worker threads (after the calls running now); the next request starts new ones."""
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)

    def _on_timer(self) -> None:
        self._timer = None
        self._dispatch()

    def _dispatch(self) -> None:
        large_lanes = max(1, self.workers - 1)
        while self._busy < self.workers:
            large = False
            batch = self._take(self._small, min(self.max_chars, 8 * max(1, self.small_chars)))
            if not batch and self._busy_large < large_lanes:
                batch, large = self._take(self._large, self.max_chars), True
            if not batch:
                break
            self._busy += 1
            self._busy_large += large
            self.calls += 1
            self.batched_requests += len(batch)
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="nerbilstm-tag")
            fut = self._loop.run_in_executor(self._executor, self._run, [job.texts for job in batch],
                                             batch[0].nbest)
            fut.add_done_callback(functools.partial(self._finished, batch, large))

    def _take(self, queue: deque[_Job], max_chars: int) -> list[_Job]:
        """The next call's requests: the first waiting one and those after it with the same
        ``nbest`` (others keep their places), within the call's limits."""
        batch: list[_Job] = []
        others: list[_Job] = []
        n_texts = n_chars = 0
        while queue:
            job = queue.popleft()
            if job.future.done():  # the client went away
                continue
            if batch and job.nbest != batch[0].nbest:
                others.append(job)
                continue
            if batch and (n_texts + len(job.texts) > self.max_texts or n_chars + job.chars > max_chars):
                queue.appendleft(job)
                break
            batch.append(job)
            n_texts += len(job.texts)
            n_chars += job.chars
        queue.extendleft(reversed(others))
        return batch

    def _finished(self, batch: list[_Job], large: bool, fut: asyncio.Future) -> None:
        self._busy -= 1
        self._busy_large -= large
        try:
            results = fut.result()
        except BaseException as err:  # noqa: BLE001 - handed to each waiting request
            results = [err] * len(batch)
        for job, result in zip(batch, results):
            if job.future.done():
                continue
            if isinstance(result, asyncio.CancelledError):
                job.future.cancel()
            elif isinstance(result, BaseException):
                job.future.set_exception(result)
            else:
                job.future.set_result(result)
        self._dispatch()

    def _over_budget(self, texts: list[str]) -> TooManyTokens | None:
        budget = self.max_tokens
        if budget is None or self._count_tokens is None or sum(len(t) for t in texts) <= budget:
            return None  # a token has at least one character
        n = self._count_tokens(texts)
        if n <= budget:
            return None
        return TooManyTokens(f"the request has {n} tokens, more than the limit of {budget} tokens per "
                             "request: send the text in smaller parts")

    def _run(self, groups: list[list[str]], nbest: int = 0) -> list[Any]:
        """In a worker thread: refuse requests over the token budget, tag the others in one call."""
        out: list[Any] = [self._over_budget(g) for g in groups]
        ok = [k for k, err in enumerate(out) if err is None]
        for k, result in zip(ok, self._run_groups([groups[k] for k in ok], nbest)):
            out[k] = result
        return out

    def _run_groups(self, groups: list[list[str]], nbest: int = 0) -> list[Any]:
        """Tag all texts of ``groups`` in one call, hand each request its share."""
        flat = [t for g in groups for t in g]
        try:
            docs = (self._tag(flat, nbest) if nbest else self._tag(flat)) if flat else []
        except Exception as err:
            if len(groups) == 1:
                return [err]
            return [self._run_groups([g], nbest)[0] for g in groups]
        out, i = [], 0
        for g in groups:
            try:
                out.append(self._finish(docs[i:i + len(g)]))
            except Exception as err:
                out.append(err)
            i += len(g)
        return out


class ClientGone(Exception):
    """The client disconnected before its request was answered."""


def json_bytes(value: Any, **kwargs) -> bytes:
    """UTF-8 JSON; strings with lone surrogates (valid JSON text, not UTF-8) are written as
    \\uXXXX escapes, so a client gets back exactly the code points it sent."""
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False, **kwargs).encode()
    except UnicodeEncodeError:
        return json.dumps(value, ensure_ascii=True, allow_nan=False, **kwargs).encode()


def _encode_results(docs: list[dict]) -> bytes:
    return json_bytes({"results": docs}, separators=(",", ":"))


class SafeJSONResponse(JSONResponse):
    """JSONResponse that survives lone surrogates and non-finite numbers (written as null)."""

    def render(self, content: Any) -> bytes:
        return json_bytes(finite_json(content), separators=(",", ":"))


# ----------------------------------------------------------------------------- middleware


def _json_bytes(status: int, body: dict) -> tuple[list[tuple[bytes, bytes]], bytes]:
    payload = json.dumps(body).encode()
    return [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())], payload


def is_loopback(host: str | None) -> bool:
    """True for localhost, 127.x.x.x and ::1 (a Host header's name, brackets and port allowed)."""
    if not host:
        return False
    try:
        name = urlsplit("//" + host).hostname or ""
    except ValueError:
        return False
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class GuardMiddleware:
    """Plain ASGI middleware, outermost of ours.

    * Request bodies over ``max_body_bytes`` get 413, judged by Content-Length when given
      (before any of the body is read) and by the bytes actually received (a chunked or lying
      client is cut off at the limit). The body is read here, within the limit, and replayed.
    * ``check_host``: answer only requests whose ``Host`` header is a loopback name (403
      otherwise), against DNS rebinding; None: do so when the server's own address is loopback.
    * Any exception that escapes the app is logged with its traceback and answered with a JSON
      500 (when no response has started yet), so clients never see a bare error page.
    * Every response gets ``X-Content-Type-Options: nosniff``.
    """

    def __init__(self, app, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, check_host: bool | None = None):
        self.app = app
        self.max_body_bytes = int(max_body_bytes)
        self.check_host = check_host

    def _host_refused(self, scope) -> bool:
        check = self.check_host
        if check is None:
            check = is_loopback(str((scope.get("server") or ("",))[0]))
        if not check:
            return False
        hosts = [v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"host"]
        return len(hosts) != 1 or not is_loopback(hosts[0])

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def send_wrapper(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message = dict(message)
                message["headers"] = list(message.get("headers", [])) + [(b"x-content-type-options", b"nosniff")]
            await send(message)

        async def reply(status: int, body: dict) -> None:
            headers, payload = _json_bytes(status, body)
            await send_wrapper({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": payload})

        if self._host_refused(scope):
            return await reply(403, {"error": "this server answers only requests addressed to a loopback "
                                              "host (localhost, 127.0.0.1 or [::1])"})
        limit = self.max_body_bytes
        too_large = {"error": f"request body is larger than the limit of {limit} bytes"}
        length = None
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    return await reply(400, {"error": "invalid Content-Length header"})
        if length is not None and length > limit:
            return await reply(413, too_large)

        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            size += len(body)
            if size > limit:
                return await reply(413, too_large)
            chunks.append(body)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # then wait for the disconnect, as the server would

        try:
            await self.app(scope, replay, send_wrapper)
        except Exception:
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if started:
                raise
            await reply(500, {"error": "internal server error"})


# ----------------------------------------------------------------------------- the app


def _validation_message(errors: Sequence[dict]) -> str:
    parts = []
    for err in errors[:3]:
        loc = [str(x) for x in err.get("loc", ()) if x != "body"]
        kind = err.get("type", "")
        msg = str(err.get("msg", "invalid value"))
        if kind == "json_invalid":
            reason = (err.get("ctx") or {}).get("error")
            where = [x for x in err.get("loc", ()) if isinstance(x, int)]
            msg = "body is not valid JSON" + (f": {reason}" if reason else "") + (
                f" at character {where[0]}" if where else "")
            loc = []
        elif kind == "missing" and not loc:
            msg = "request body is missing: send a JSON object {\"text\": ...} or {\"texts\": [...]}"
        elif kind == "model_attributes_type" or (kind == "dict_type" and not loc):
            msg = "request body must be a JSON object {\"text\": ...} or {\"texts\": [...]}"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        parts.append(f"{'.'.join(loc)}: {msg}" if loc else msg)
    if len(errors) > 3:
        parts.append(f"and {len(errors) - 3} more")
    return "; ".join(parts) or "invalid request"


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI):
    yield
    app.state.batcher.shutdown()


def default_workers() -> int:
    """Tagging threads: one per core, at least 2 (so one slow request never holds them all), at most 4."""
    return max(2, min(4, os.cpu_count() or 1))


def _add_page_routes(app: FastAPI) -> None:
    """The web page, the offline API docs and their static files."""

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html",
                            headers={"Content-Security-Policy": PAGE_CSP, "Cache-Control": "no-cache"})

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=app.openapi_url, title="nerbilstm API",
                                   swagger_js_url="/static/swagger-ui-bundle.js",
                                   swagger_css_url="/static/swagger-ui.css",
                                   swagger_favicon_url="/static/favicon.svg",
                                   swagger_ui_parameters={"validatorUrl": None, "defaultModelsExpandDepth": 0})

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> FileResponse:
        return FileResponse(STATIC_DIR / "favicon.svg", media_type="image/svg+xml")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")


def _model_info(tagger, server: dict) -> dict:
    """Tagger.info() without the model's directory (a path of the serving machine), with the
    entity types described, the example text stored at training (None for older models) and the
    server's settings."""
    info = {k: v for k, v in tagger.info().items() if k != "path"}
    example = (getattr(tagger, "config", None) or {}).get("example")
    return finite_json({**info, "entity_descriptions": {t: ENTITY_TYPES.get(t, t) for t in info["entity_types"]},
                        "example": example if isinstance(example, str) else None, "server": server})


def _check_nbest(nbest: int, model_info: dict) -> None:
    """K best tag sequences come from a CRF: for another model a request with nbest is a NerError (422)."""
    if nbest and (model_info.get("model") or {}).get("decoder") != "crf":
        raise NerError("nbest needs a CRF model (this one decodes with softmax)")


def _count_tokens(texts: list[str]) -> int:
    from nerbilstm.data.tokenizer import tokenize

    return sum(len(tokenize(t)) for t in texts)


def _parse_error(exc: StarletteHTTPException) -> str | None:
    """Why FastAPI could not parse a body it answers with 400 "error parsing the body", or None."""
    cause = exc.__cause__
    if exc.status_code != 400 or cause is None:
        return None
    if isinstance(cause, UnicodeDecodeError):
        return f"the body is not UTF-8 text (byte {cause.object[cause.start]:#04x} at offset {cause.start})"
    if isinstance(cause, RecursionError):
        return "arrays or objects are nested too deeply"
    if isinstance(cause, ValueError) and "digits" in str(cause):
        return "a number has too many digits (at most 4300)"
    return str(cause)[:200] if isinstance(cause, ValueError) else None


def _add_error_handlers(app: FastAPI) -> None:
    """Every error is JSON ``{"error": message}``: 422 for bodies that are not valid requests."""

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        errors = finite_json(jsonable_encoder(exc.errors()))
        message = _validation_message(errors)
        content_type = request.headers.get("content-type", "")
        if request.method == "POST" and "json" not in content_type.lower():
            message = f"send the body as JSON with 'Content-Type: application/json' (got {content_type or 'none'})"
        return SafeJSONResponse({"error": message, "detail": errors}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        reason = _parse_error(exc)
        if reason is not None:
            return SafeJSONResponse({"error": f"body is not valid JSON: {reason}",
                                     "detail": [{"type": "json_invalid", "loc": ["body"], "msg": reason}]},
                                    status_code=422)
        return SafeJSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(NerError)
    async def _ner_error(request: Request, exc: NerError):
        return SafeJSONResponse({"error": str(exc)}, status_code=422)

    @app.exception_handler(TooManyTokens)
    async def _too_many_tokens(request: Request, exc: TooManyTokens):
        return SafeJSONResponse({"error": str(exc)}, status_code=413)


def create_app(tagger_or_model_dir: Any = None, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, *,
               workers: int | None = None, batch_window_ms: float = 1.0, max_batch_texts: int = 64,
               max_batch_chars: int = 50_000, max_tokens_per_request: int | None = None,
               check_host: bool | None = None) -> FastAPI:
    """The FastAPI app around a tagger.

    tagger_or_model_dir: a loaded ``Tagger`` (or anything with ``__call__(list[str])``,
    ``labels`` and ``info()``), a model directory, or None for the shipped default model.
    max_tokens_per_request: requests with more tokens get 413 (default: half of
    ``max_body_bytes``, which ordinary text within the body limit never reaches: a token and
    the space after it take 2 bytes at least). check_host: see GuardMiddleware.
    """
    if tagger_or_model_dir is None or isinstance(tagger_or_model_dir, (str, os.PathLike)):
        from nerbilstm.predict import Tagger

        tagger = Tagger.load(tagger_or_model_dir)
    else:
        tagger = tagger_or_model_dir
    max_tokens = int(max_tokens_per_request or max(1, int(max_body_bytes) // 2))
    batcher = MicroBatcher(lambda texts, *nbest: tagger(list(texts), *nbest), _encode_results,
                           workers=workers or default_workers(), window_s=batch_window_ms / 1000.0,
                           max_texts=max_batch_texts, max_chars=max_batch_chars, max_tokens=max_tokens,
                           count_tokens=_count_tokens)
    model_info = _model_info(tagger, {"nerbilstm_version": __version__, "max_body_bytes": int(max_body_bytes),
                                      "max_tokens_per_request": max_tokens, "workers": batcher.workers,
                                      "batch_window_ms": batch_window_ms})

    app = FastAPI(
        title="nerbilstm",
        version=__version__,
        summary="Named-entity recognition with a BiLSTM-CRF",
        description=(
            "`POST /api/tag` takes `{\"text\": \"...\"}` or `{\"texts\": [\"...\", ...]}` (and `\"nbest\": K` "
            "for a CRF model's K best tag sequences) and always answers "
            "`{\"results\": [doc, ...]}`, one doc per text. Offsets (`start`, `end`) count Unicode code "
            "points into that text, so `text[start:end]` is the entity in Python.\n\n"
            f"Errors are JSON `{{\"error\": message}}`: 413 for a body over {int(max_body_bytes)} bytes "
            f"or over {max_tokens} tokens, 422 for malformed JSON or a wrong shape (with `detail`)."),
        docs_url=None, redoc_url=None,  # /docs is ours below: same Swagger UI, files served from here
        lifespan=_lifespan, default_response_class=SafeJSONResponse,
    )
    app.state.tagger = tagger
    app.state.batcher = batcher
    app.add_middleware(GuardMiddleware, max_body_bytes=max_body_bytes, check_host=check_host)

    _add_error_handlers(app)

    errors_doc = {413: {"model": ErrorOut, "description": "request body too large, or too many tokens"},
                  422: {"model": ErrorOut, "description": "malformed JSON or wrong shape"}}

    @app.post("/api/tag", response_model=TagResponse, responses=errors_doc, tags=["tagging"],
              summary="Tag one text or a list of texts")
    async def tag(body: TagRequest, request: Request) -> Response:
        """Tokens with their tags, and entities with character offsets, label, text and score.

        The answer has the same shape for both forms of request: `{"results": [doc, ...]}`.
        An empty text gives a doc with no tokens and no entities.
        """
        texts = [body.text] if body.text is not None else list(body.texts or [])
        _check_nbest(body.nbest, model_info)
        if not texts:
            return Response(_encode_results([]), media_type="application/json")
        try:
            payload = await batcher.submit(texts, gone=request.receive(), nbest=body.nbest)
        except ClientGone:
            return Response(status_code=499)  # nobody is listening
        return Response(payload, media_type="application/json")

    @app.get("/api/model", tags=["model"], summary="The loaded model: labels, configuration, metrics")
    async def model() -> dict:
        """Labels and entity types, model and training configuration and evaluation metrics of the
        loaded model (its vocabulary is left out), and the server's limits."""
        return model_info

    @app.get("/healthz", tags=["model"], summary="Liveness: the model is loaded and the server answers")
    async def healthz() -> dict:
        return {"status": "ok"}

    _add_page_routes(app)
    return app


DEFAULT_MAX_CONNECTIONS = 512
DEFAULT_KEEP_ALIVE_S = 5


def server_config(app, host: str = "127.0.0.1", port: int = 8000, *, max_connections: int = DEFAULT_MAX_CONNECTIONS,
                  keep_alive_s: int = DEFAULT_KEEP_ALIVE_S, log_level: str = "info"):
    """uvicorn's settings: at most ``max_connections`` open connections (a request on one more
    is answered 503), idle keep-alive connections closed after ``keep_alive_s`` seconds."""
    import uvicorn

    # uvicorn answers 503 once the open connections (this one included) reach limit_concurrency
    return uvicorn.Config(app, host=host, port=port, log_level=log_level, limit_concurrency=int(max_connections) + 1,
                          timeout_keep_alive=int(keep_alive_s))


def serve(model_dir: str | Path | None = None, host: str = "127.0.0.1", port: int = 8000,
          max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, workers: int | None = None,
          torch_threads: int | None = None, log_level: str = "info", *,
          max_tokens_per_request: int | None = None, max_connections: int = DEFAULT_MAX_CONNECTIONS,
          keep_alive_s: int = DEFAULT_KEEP_ALIVE_S, any_host: bool = False) -> None:
    """Load the model once and serve it with uvicorn until interrupted.

    Torch's intra-op threads are set so the tagging threads share the cores without
    oversubscribing them: cores // workers each (at least 1), unless ``torch_threads`` says.
    Bound to a loopback address, only requests with a loopback Host header are answered
    (against DNS rebinding) unless ``any_host``.
    """
    import torch
    import uvicorn

    from nerbilstm.predict import Tagger

    tagger = Tagger.load(model_dir)  # first: a bad model directory fails before anything changes
    workers = workers or default_workers()
    threads = torch_threads or max(1, (os.cpu_count() or 1) // workers)
    torch.set_num_threads(threads)
    loopback = is_loopback(f"[{host}]" if ":" in host else host)
    app = create_app(tagger, max_body_bytes=max_body_bytes, workers=workers,
                     max_tokens_per_request=max_tokens_per_request, check_host=loopback and not any_host)
    if not loopback:
        log.warning("listening on %s: anyone who can reach this address can use the server", host)
    log.info("model %s: %d labels; %d tagging threads x %d torch threads; body limit %d bytes, %d tokens; "
             "at most %d connections, idle ones closed after %g s", model_dir or "(default)", len(tagger.labels),
             workers, threads, max_body_bytes, app.state.batcher.max_tokens, max_connections, keep_alive_s)
    log.info("open http://%s:%d/ (API docs at /docs)", f"[{host}]" if ":" in host else host, port)
    uvicorn.Server(server_config(app, host, port, max_connections=max_connections, keep_alive_s=keep_alive_s,
                                 log_level=log_level)).run()
