"""The HTTP side: a token check, then Ollama's API forwarded byte for byte (aiohttp).

- ``/healthz``: liveness and the worker state, no token, never wakes anything.
- ``/metrics``: Prometheus exposition, token required.
- Everything else needs ``Authorization: Bearer <token>``; without it: 401, and nothing wakes.
- Model-list calls (``GET /api/tags``, ``/api/version``, ``/v1/models``, ``/``, ``/api/ps``)
  neither wake the worker nor count as use: while it is down they are answered from the last
  reply seen (so opening Open WebUI does not start a GPU), or, with none seen yet, they wake it.
- Every other request is use: it waits (bounded) for the worker, then is forwarded; the reply
  streams back chunk by chunk as Ollama writes it (NDJSON of /api/chat, /api/generate, SSE of
  /v1/chat/completions), compressed bodies untouched.
- The client's ``Authorization`` is not forwarded to Ollama (worker mode); the gate forwards
  it, since its upstream, the AWS-side gpu-waker, checks the same token.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from prometheus_client import CONTENT_TYPE_LATEST, Histogram

from gpu_waker.controller import PowerController, WakeError

log = logging.getLogger("gpu_waker")

# RFC 9110 section 7.6.1 hop-by-hop fields, plus what the proxy sets itself, plus the client's
# token (for the proxy, not for Ollama; the gate keeps it: see forward_headers).
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "authorization",
    }
)
CACHED_ROUTES = frozenset(
    {("GET", "/api/tags"), ("GET", "/api/version"), ("GET", "/v1/models"), ("GET", "/")}
)
METADATA_ROUTES = CACHED_ROUTES | {("GET", "/api/ps"), ("HEAD", "/")}
MAX_BODY_BYTES = 64 * 1024 * 1024
"""Largest request body accepted (base64 images for vision models fit)."""
CACHE_HEADER = "X-Gpu-Waker-Cache"
STREAM_BUFFER_BYTES = 4 * 1024 * 1024
WHOLE_BODY_BYTES = 1024 * 1024
"""Replies with a Content-Length up to this are relayed in one piece; streams (Ollama's NDJSON
and SSE have no Content-Length) always chunk by chunk."""


@dataclass
class CachedReply:
    status: int
    content_type: str
    body: bytes


@dataclass
class ProxyState:
    controller: PowerController
    session: aiohttp.ClientSession
    token: bytes
    forward_authorization: bool = False
    """Gate mode: the upstream (the AWS-side gpu-waker) checks the client's token too."""
    cache: dict[tuple[str, str], CachedReply] = field(default_factory=dict)


STATE_KEY = web.AppKey("gpu_waker", ProxyState)


def _error(status: int, message: str, retry_after: int | None = None) -> web.Response:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
    return web.json_response({"error": message}, status=status, headers=headers)


def authorized(request: web.Request, token: bytes) -> bool:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), token)


def forward_headers(
    headers: Mapping[str, str], *, keep_authorization: bool = False
) -> CIMultiDict[str]:
    """End-to-end fields only (repeated fields kept, in order); ``Authorization`` only with
    ``keep_authorization``."""
    return CIMultiDict(
        (k, v)
        for k, v in headers.items()
        if k.lower() not in HOP_BY_HOP or (keep_authorization and k.lower() == "authorization")
    )


async def healthz(request: web.Request) -> web.Response:
    controller = request.app[STATE_KEY].controller
    return web.json_response(
        {
            "status": "ok",
            "worker": controller.power.instance_id,
            "state": controller.state,
            "mode": controller.settings.mode,
        }
    )


async def metrics(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    if not authorized(request, state.token):
        state.controller.metrics.requests.labels("unauthorized").inc()
        return _unauthorized()
    return web.Response(
        body=state.controller.metrics.exposition(),
        headers={"Content-Type": CONTENT_TYPE_LATEST},
    )


def _unauthorized() -> web.Response:
    response = _error(401, "missing or wrong bearer token")
    response.headers["WWW-Authenticate"] = 'Bearer realm="gpu-waker"'
    return response


def _from_cache(state: ProxyState, route: tuple[str, str]) -> web.Response | None:
    if route == ("GET", "/api/ps"):
        # The worker is down: nothing is loaded.
        return web.json_response({"models": []}, headers={CACHE_HEADER: "synthesized"})
    if route == ("HEAD", "/"):
        cached = state.cache.get(("GET", "/"))
        return web.Response(status=200 if cached else 503, headers={CACHE_HEADER: "hit"})
    cached = state.cache.get(route)
    if cached is None:
        return None
    return web.Response(
        status=cached.status,
        body=cached.body,
        headers={"Content-Type": cached.content_type, CACHE_HEADER: "hit"},
    )


async def proxy(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    controller = state.controller
    if not authorized(request, state.token):
        controller.metrics.requests.labels("unauthorized").inc()
        return _unauthorized()
    route = (request.method, request.path)
    body = await request.read()
    cache = route in CACHED_ROUTES
    if route in METADATA_ROUTES:
        # Model lists never wake the worker when a reply seen earlier can answer them.
        url = await controller.ready_url()
        if url is not None:
            try:
                return await _forward(request, state, url, body, cache=cache)
            except UpstreamUnreachable:
                controller.upstream_failed()
        cached = _from_cache(state, route)
        if cached is not None:
            controller.metrics.requests.labels("cached").inc()
            return cached
    for attempt in (1, 2):
        try:
            url = await controller.ensure_ready(f"{request.method} {request.path}")
        except WakeError as err:
            controller.metrics.requests.labels(f"status-{err.status}").inc()
            log.warning("%s %s: %s %s", request.method, request.path, err.status, err.reason)
            return _error(err.status, err.reason, err.retry_after)
        try:
            return await _forward(request, state, url, body, cache=cache)
        except UpstreamUnreachable as err:
            # Nothing was sent to the client yet: the worker went away under us (stopped by
            # hand, spot interruption). Re-check once, which wakes it again if needed.
            controller.upstream_failed()
            if attempt == 2:
                controller.metrics.requests.labels("status-502").inc()
                return _error(502, f"Ollama is unreachable: {err}")
    raise AssertionError("unreachable")


class UpstreamUnreachable(Exception):
    """Connecting to Ollama failed before anything was sent to the client."""


async def _forward(
    request: web.Request, state: ProxyState, base: str, body: bytes, *, cache: bool
) -> web.StreamResponse:
    controller = state.controller
    activity = (request.method, request.path) not in METADATA_ROUTES
    controller.request_started(activity=activity)
    started = time.monotonic()

    def observe(histogram: Histogram) -> None:
        if activity:
            histogram.observe(time.monotonic() - started)

    try:
        try:
            exchange = await state.session.request(
                request.method,
                f"{base}{request.rel_url}",
                headers=forward_headers(
                    request.headers, keep_authorization=state.forward_authorization
                ),
                data=body or None,
                allow_redirects=False,
            )
        except aiohttp.ClientConnectionError as err:
            raise UpstreamUnreachable(err) from err
        observe(controller.metrics.upstream_first_byte)
        async with exchange as upstream:
            headers = forward_headers(upstream.headers)
            length = upstream.content_length
            if cache or (length is not None and length <= WHOLE_BODY_BYTES):
                # A small body of known length (not a stream): one write, not three.
                data = await upstream.read()
                if cache and upstream.status == 200:
                    state.cache[(request.method, request.path)] = CachedReply(
                        upstream.status, upstream.headers.get("Content-Type", ""), data
                    )
                controller.metrics.requests.labels("forwarded").inc()
                observe(controller.metrics.upstream_duration)
                return web.Response(status=upstream.status, body=data, headers=headers)
            response = web.StreamResponse(status=upstream.status, headers=headers)
            await response.prepare(request)
            if request.transport is not None:
                # Let the client's socket buffer up to STREAM_BUFFER_BYTES before a write waits,
                # so reading from Ollama and writing to the client overlap on big streams; a
                # slow client still pushes back past that.
                request.transport.set_write_buffer_limits(high=STREAM_BUFFER_BYTES)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            controller.metrics.requests.labels("forwarded").inc()
            observe(controller.metrics.upstream_duration)
            return response
    finally:
        controller.request_finished(activity=activity)


def make_app(
    controller: PowerController,
    session: aiohttp.ClientSession,
    token: str,
    *,
    forward_authorization: bool = False,
) -> web.Application:
    if len(token) < 16:
        raise ValueError("the client token must have at least 16 characters")
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app[STATE_KEY] = ProxyState(
        controller=controller,
        session=session,
        token=token.encode(),
        forward_authorization=forward_authorization,
    )
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_route("*", "/{tail:.*}", proxy)
    return app


def upstream_session(read_timeout_seconds: float) -> aiohttp.ClientSession:
    """Client session towards Ollama: no total timeout (a stream lasts as long as it lasts),
    a bounded connect, and a read timeout longer than a model load (Ollama sends its headers
    only once the model is in memory, ollama/ollama#9292); in gate mode longer than the AWS-side
    gpu-waker holds a request while the worker boots. Bodies pass through undecoded."""
    return aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=read_timeout_seconds),
        auto_decompress=False,
        # Larger reads mean fewer pause/resume cycles of the socket on big streams.
        read_bufsize=2**20,
        connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=30),
    )
