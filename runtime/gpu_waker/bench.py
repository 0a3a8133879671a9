"""Loopback benchmark of the proxy's warm path (not a test; prints figures to compare).

    .venv/bin/python bench.py [--requests 2000] [--stream-mib 256]

Three processes: a fake Ollama, the proxy (worker reported running, so every request takes the
warm path), and this client. Reports per-request latency (p50/p99) direct vs through the proxy,
the difference (what the proxy adds), and NDJSON streaming throughput direct vs proxied.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))

import aiohttp
from aiohttp import web

from gpu_waker.cluster import StaticCluster
from gpu_waker.controller import ControllerSettings, PowerController
from gpu_waker.ec2 import InstanceState
from gpu_waker.proxy import make_app, upstream_session

TOKEN = "bench-token-0123456789abcdef"  # noqa: S105 - a loopback benchmark's token
CHUNK = b'{"model":"bench","response":"' + b"x" * 65000 + b'","done":false}\n'
# One token per line, the shape of Ollama's /api/chat stream (~100 bytes a line).
TOKEN_LINE = (
    b'{"model":"bench","created_at":"2026-11-30T12:00:00Z","message":'
    b'{"role":"assistant","content":"tok"},"done":false}\n'
)
TOKEN_LINES = 50_000


class RunningEc2:
    instance_id = "i-bench"

    async def describe(self) -> InstanceState:
        return InstanceState("running")

    async def start(self) -> None:
        raise AssertionError("the benchmark never starts anything")

    async def stop(self) -> None:
        raise AssertionError("the benchmark never stops anything")


def upstream_app(stream_bytes: int) -> web.Application:
    async def version(_: web.Request) -> web.Response:
        return web.json_response({"version": "bench"})

    async def show(_: web.Request) -> web.Response:
        return web.json_response({"modelfile": "FROM bench", "parameters": "", "template": ""})

    async def generate(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        sent = 0
        while sent < stream_bytes:
            await response.write(CHUNK)
            sent += len(CHUNK)
        await response.write_eof()
        return response

    async def chat(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        for _ in range(TOKEN_LINES):
            await response.write(TOKEN_LINE)  # one write per token, as Ollama flushes them
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/api/chat", chat)
    app.router.add_get("/api/version", version)
    app.router.add_post("/api/show", show)
    app.router.add_post("/api/generate", generate)
    return app


def serve_upstream(port: int, stream_bytes: int) -> None:
    web.run_app(
        upstream_app(stream_bytes), host="127.0.0.1", port=port, print=None, access_log=None
    )


def serve_proxy(port: int, upstream: str) -> None:
    async def main() -> None:
        session = upstream_session(60)
        controller = PowerController(
            power=RunningEc2(),
            cluster=StaticCluster(url=upstream),
            session=session,
            settings=ControllerSettings(ready_ttl_seconds=5.0),
        )
        runner = web.AppRunner(make_app(controller, session, TOKEN), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        await asyncio.Event().wait()

    asyncio.run(main())


async def wait_up(url: str) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(200):
            try:
                async with session.get(f"{url}/healthz") as _:
                    return
            except aiohttp.ClientError:
                await asyncio.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")


async def latencies(base: str, count: int, headers: dict[str, str]) -> list[float]:
    times = []
    async with aiohttp.ClientSession(headers=headers) as session:
        for i in range(count + 50):
            began = time.perf_counter()
            async with session.post(f"{base}/api/show", json={"model": "bench"}) as reply:
                await reply.read()
                assert reply.status == 200
            if i >= 50:  # warm-up
                times.append((time.perf_counter() - began) * 1000)
    return times


async def throughput(base: str, headers: dict[str, str]) -> tuple[float, float]:
    async with aiohttp.ClientSession(headers=headers) as session:
        began = time.perf_counter()
        first: float | None = None
        total = 0
        async with session.post(f"{base}/api/generate", json={"model": "bench"}) as reply:
            async for chunk in reply.content.iter_any():
                if first is None:
                    first = time.perf_counter() - began
                total += len(chunk)
        elapsed = time.perf_counter() - began
    return total / elapsed / 2**20, (first or 0) * 1000


async def token_rate(base: str, headers: dict[str, str]) -> float:
    """Lines (tokens) per second of an NDJSON chat stream, read line by line."""
    async with aiohttp.ClientSession(headers=headers) as session:
        began = time.perf_counter()
        lines = 0
        async with session.post(f"{base}/api/chat", json={"model": "bench"}) as reply:
            async for _ in reply.content:
                lines += 1
        assert lines == TOKEN_LINES
        return lines / (time.perf_counter() - began)


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (proc(5): fields 14 and 15, in clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(direct: str, proxied: str, requests: int, proxy_pid: int) -> None:
    await wait_up(proxied)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    d = await latencies(direct, requests, {})
    cpu = cpu_seconds(proxy_pid)
    p = await latencies(proxied, requests, auth)
    per_request = (cpu_seconds(proxy_pid) - cpu) / (requests + 50) * 1000
    print(f"warm path, {requests} sequential POST /api/show (ms)")
    print(f"  {'':10} {'p50':>8} {'p99':>8}")
    print(f"  {'direct':10} {pct(d, 50):8.3f} {pct(d, 99):8.3f}")
    print(f"  {'proxied':10} {pct(p, 50):8.3f} {pct(p, 99):8.3f}")
    print(f"  {'added':10} {pct(p, 50) - pct(d, 50):8.3f} {pct(p, 99) - pct(d, 99):8.3f}")
    print(f"  proxy CPU time per request: {per_request:.3f} ms (independent of machine load)")
    dt, dfirst = await throughput(direct, {})
    cpu = cpu_seconds(proxy_pid)
    pt, pfirst = await throughput(proxied, auth)
    cpu_stream = cpu_seconds(proxy_pid) - cpu
    print("streaming NDJSON /api/generate (64 KB lines)")
    print(f"  direct   {dt:8.1f} MiB/s  first byte {dfirst:6.2f} ms")
    print(f"  proxied  {pt:8.1f} MiB/s  first byte {pfirst:6.2f} ms  ({pt / dt:.0%} of direct)")
    print(f"  proxy CPU time for the stream: {cpu_stream:.2f} s")
    dr = await token_rate(direct, {})
    pr = await token_rate(proxied, auth)
    print(f"token stream /api/chat ({TOKEN_LINES} NDJSON lines, one write each)")
    print(f"  direct   {dr:10.0f} lines/s")
    print(f"  proxied  {pr:10.0f} lines/s  ({pr / dr:.0%} of direct)")


async def in_one_process(requests: int) -> None:
    """Client, proxy and upstream on one event loop: what the proxy's own work adds, without
    the machine's process scheduling (which dominates on a small, shared VM)."""
    upstream = web.AppRunner(upstream_app(2**20), access_log=None)
    await upstream.setup()
    await web.TCPSite(upstream, "127.0.0.1", 18534).start()
    session = upstream_session(60)
    controller = PowerController(
        power=RunningEc2(),
        cluster=StaticCluster(url="http://127.0.0.1:18534"),
        session=session,
        settings=ControllerSettings(ready_ttl_seconds=5.0),
    )
    proxy = web.AppRunner(make_app(controller, session, TOKEN), access_log=None)
    await proxy.setup()
    await web.TCPSite(proxy, "127.0.0.1", 18535).start()
    try:
        d = await latencies("http://127.0.0.1:18534", requests, {})
        p = await latencies(
            "http://127.0.0.1:18535", requests, {"Authorization": f"Bearer {TOKEN}"}
        )
    finally:
        await proxy.cleanup()
        await session.close()
        await upstream.cleanup()
    print("warm path, all in one process (ms)")
    print(f"  {'direct':10} {pct(d, 50):8.3f} {pct(d, 99):8.3f}")
    print(f"  {'proxied':10} {pct(p, 50):8.3f} {pct(p, 99):8.3f}")
    print(f"  {'added':10} {pct(p, 50) - pct(d, 50):8.3f} {pct(p, 99) - pct(d, 99):8.3f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--stream-mib", type=int, default=256)
    args = parser.parse_args(argv)
    upstream_port, proxy_port = 18434, 18435
    upstream = f"http://127.0.0.1:{upstream_port}"
    procs = [
        multiprocessing.Process(
            target=serve_upstream, args=(upstream_port, args.stream_mib * 2**20), daemon=True
        ),
        multiprocessing.Process(target=serve_proxy, args=(proxy_port, upstream), daemon=True),
    ]
    for proc in procs:
        proc.start()
    try:
        load = os.getloadavg()[0]
        print(f"gpu-waker loopback benchmark ({os.cpu_count()} CPUs, load average {load:.1f})")
        assert procs[1].pid is not None
        asyncio.run(
            measure(upstream, f"http://127.0.0.1:{proxy_port}", args.requests, procs[1].pid)
        )
    finally:
        for proc in procs:
            proc.terminate()
            proc.join(5)
    asyncio.run(in_one_process(args.requests))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
