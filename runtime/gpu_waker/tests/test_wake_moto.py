"""The controller against a real moto EC2 server and a fake Ollama on loopback, driven by a
real HTTP client (aiohttp): the seven behaviours of issue #15, the token, the model-list cache."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp

from gpu_waker.cluster import GpuPod, GpuPods
from gpu_waker.controller import ControllerSettings
from tests.conftest import AUTH, FAST, World, cli, run, start_cli, start_waker, world
from tests.fakes import Ec2Front, FakeOllama, Fault, MotoEc2, read_json_lines

CHAT = {"model": "llama3.1:8b", "messages": [{"role": "user", "content": "hi"}]}
ONE_SHOT = {**CHAT, "stream": False}


async def chat(w: World, payload: dict[str, object] = ONE_SHOT) -> aiohttp.ClientResponse:
    return await w.client.post(f"{w.waker.url}/api/chat", json=payload, headers=AUTH)


def test_cold_request_starts_the_worker_once_and_is_answered(moto_ec2: MotoEc2) -> None:
    async def scenario() -> None:
        async with world(moto_ec2) as w:
            assert moto_ec2.state() == "stopped"
            reply = await chat(w)
            assert reply.status == 200, await reply.text()
            assert (await reply.json())["message"]["content"] == "hello"
            assert w.front.calls["StartInstances"] == 1
            assert moto_ec2.state() == "running"
            # Warm now: more requests start nothing.
            for _ in range(3):
                assert (await chat(w)).status == 200
            assert w.front.calls["StartInstances"] == 1
            assert w.waker.controller.state == "ready"

    run(scenario)


def test_fifty_concurrent_cold_requests_share_one_start(moto_ec2: MotoEc2) -> None:
    async def scenario() -> None:
        async with world(moto_ec2, boot_delay=0.5) as w:
            replies = await asyncio.gather(*(chat(w) for _ in range(50)))
            assert [r.status for r in replies] == [200] * 50
            bodies = await asyncio.gather(*(r.json() for r in replies))
            assert all(b["done"] for b in bodies)
            assert w.front.calls["StartInstances"] == 1

    run(scenario)


def test_a_stream_arrives_chunk_by_chunk(moto_ec2: MotoEc2) -> None:
    async def scenario() -> None:
        async with world(moto_ec2) as w:
            w.ollama.gate.clear()  # the upstream holds its last chunk back
            reply = await chat(w, {**CHAT, "stream": True})
            assert reply.status == 200
            assert reply.headers["Content-Type"].startswith("application/x-ndjson")
            first = await asyncio.wait_for(reply.content.readline(), timeout=5)
            assert read_json_lines(first)[0]["message"]["content"] == "part-0"
            # The client has the first chunk while the upstream has not produced the last.
            assert w.ollama.chunks - 1 not in w.ollama.produced
            w.ollama.gate.set()
            rest = read_json_lines(await reply.read())
            assert [line["message"]["content"] for line in rest] == [
                f"part-{i}" for i in range(1, w.ollama.chunks)
            ]
            assert rest[-1]["done"] is True

    run(scenario)


def test_idle_stop_after_n_minutes_never_during_a_stream_or_a_gpu_pod(
    moto_ec2: MotoEc2,
) -> None:
    async def scenario() -> None:
        async with world(moto_ec2) as w:
            controller, clock = w.waker.controller, w.waker.clock
            idle = FAST.idle_stop_seconds
            assert (await chat(w)).status == 200
            # A stream in flight for longer than the idle period: no stop.
            w.ollama.gate.clear()
            stream = await chat(w, {**CHAT, "stream": True})
            await stream.content.readline()
            clock.advance(idle + 60)
            await controller.reconcile()
            assert w.front.calls["StopInstances"] == 0
            w.ollama.gate.set()
            await stream.read()
            # A model still in memory (within Ollama's keep-alive): no stop.
            w.ollama.loaded = ["llama3.1:8b"]
            clock.advance(idle + 60)
            await controller.reconcile()
            assert w.front.calls["StopInstances"] == 0
            w.ollama.loaded = []
            # A GPU pod (a Liqo-offloaded job) runs: no stop however long.
            w.waker.cluster.pods = GpuPods((GpuPod("u1", "jobs/train", pending=False),))
            clock.advance(idle + 60)
            await controller.reconcile()
            assert w.front.calls["StopInstances"] == 0
            w.waker.cluster.pods = GpuPods()
            # The pod ended just now, so the idle period starts again.
            clock.advance(idle - 30)
            await controller.reconcile()
            assert w.front.calls["StopInstances"] == 0
            clock.advance(31)
            await controller.reconcile()
            assert w.front.calls["StopInstances"] == 1
            assert moto_ec2.state() == "stopped"
            assert controller.state == "stopping"
            # The next request wakes it again.
            assert (await chat(w)).status == 200
            assert w.front.calls["StartInstances"] == 2

    run(scenario)


def test_insufficient_capacity_is_a_503_with_retry_after_and_a_later_request_retries(
    moto_ec2: MotoEc2,
) -> None:
    async def scenario() -> None:
        async with world(moto_ec2) as w:
            w.front.fault = Fault(
                "StartInstances",
                "InsufficientInstanceCapacity",
                "We currently do not have sufficient g4dn.xlarge capacity in us-west-2a.",
            )
            began = time.monotonic()
            reply = await chat(w)
            assert time.monotonic() - began < FAST.wake_timeout_seconds
            assert reply.status == 503
            retry_after = int(reply.headers["Retry-After"])
            assert retry_after == FAST.backoff_base_seconds
            error = (await reply.json())["error"]
            assert "InsufficientInstanceCapacity" in error
            assert w.ollama.runner is None
            assert moto_ec2.state() == "stopped"
            # Within Retry-After: answered at once, EC2 is not asked again.
            attempts = w.front.calls["StartInstances"]
            again = await chat(w)
            assert again.status == 503
            assert "next start attempt" in (await again.json())["error"]
            assert w.front.calls["StartInstances"] == attempts
            # Capacity is back and Retry-After has passed: the next request starts the worker.
            w.front.fault = None
            w.waker.clock.advance(retry_after + 1)
            later = await chat(w)
            assert later.status == 200
            assert w.front.forwarded["StartInstances"] == 1
            assert moto_ec2.state() == "running"

    run(scenario)


def test_wake_timeout_is_a_clear_error_and_leaves_the_instance_running(
    moto_ec2: MotoEc2,
) -> None:
    settings = ControllerSettings(**{**FAST.__dict__, "wake_timeout_seconds": 1.0})

    async def scenario() -> None:
        async with world(moto_ec2, boot_delay=3600, settings=settings) as w:
            began = time.monotonic()
            reply = await chat(w)
            assert 1.0 <= time.monotonic() - began < 5
            assert reply.status == 504
            error = (await reply.json())["error"]
            assert moto_ec2.instance_id in error
            assert "not ready after 1 s" in error
            assert int(reply.headers["Retry-After"]) > 0
            assert moto_ec2.state() == "running"
            assert w.front.calls["StopInstances"] == 0

    run(scenario)


def test_a_controller_restarted_mid_wake_does_not_start_again(moto_ec2: MotoEc2) -> None:
    async def scenario() -> None:
        async with world(moto_ec2, boot_delay=1.0) as w:
            first = asyncio.ensure_future(chat(w))
            while w.front.forwarded["StartInstances"] == 0:
                await asyncio.sleep(0.02)
            # The process dies mid-wake: its server, held request and wake task are gone.
            await w.waker.close()
            first.cancel()
            await asyncio.gather(first, return_exceptions=True)
            assert w.ollama.runner is None  # still booting
            restarted = await start_waker(w.front, moto_ec2.instance_id, w.ollama.url)
            try:
                reply = await w.client.post(
                    f"{restarted.url}/api/chat", json=ONE_SHOT, headers=AUTH
                )
                assert reply.status == 200
            finally:
                await restarted.close()
            assert w.front.calls["StartInstances"] == 1

    run(scenario)


def test_a_request_without_the_token_gets_401_and_wakes_nothing(moto_ec2: MotoEc2) -> None:
    async def scenario() -> None:
        async with world(moto_ec2) as w:
            for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789"}):
                reply = await w.client.post(
                    f"{w.waker.url}/api/chat", json=ONE_SHOT, headers=headers
                )
                assert reply.status == 401
                assert reply.headers["WWW-Authenticate"].startswith("Bearer")
            assert (await w.client.get(f"{w.waker.url}/api/tags")).status == 401
            assert (await w.client.get(f"{w.waker.url}/metrics")).status == 401
            await asyncio.sleep(0.3)
            assert w.front.calls["StartInstances"] == 0
            assert moto_ec2.state() == "stopped"
            health = await w.client.get(f"{w.waker.url}/healthz")
            assert health.status == 200
            metrics = await w.client.get(f"{w.waker.url}/metrics", headers=AUTH)
            assert 'gpu_waker_requests_total{outcome="unauthorized"} 4.0' in await metrics.text()

    run(scenario)


def test_model_lists_are_served_from_cache_while_stopped(moto_ec2: MotoEc2) -> None:
    async def scenario() -> None:
        async with world(moto_ec2) as w:
            tags = await w.client.get(f"{w.waker.url}/api/tags", headers=AUTH)  # wakes: no cache
            assert tags.status == 200
            live = await tags.json()
            moto_ec2.client.stop_instances(InstanceIds=[moto_ec2.instance_id])
            while w.ollama.runner is not None:
                await asyncio.sleep(0.02)
            starts = w.front.calls["StartInstances"]
            cached = await w.client.get(f"{w.waker.url}/api/tags", headers=AUTH)
            assert cached.status == 200
            assert cached.headers["X-Gpu-Waker-Cache"] == "hit"
            assert await cached.json() == live
            ps = await w.client.get(f"{w.waker.url}/api/ps", headers=AUTH)
            assert await ps.json() == {"models": []}
            assert w.front.calls["StartInstances"] == starts
            assert moto_ec2.state() == "stopped"

    run(scenario)


def test_ollama_latency_is_measured_for_use_not_for_model_lists(moto_ec2: MotoEc2) -> None:
    async def scenario() -> None:
        async with world(moto_ec2) as w:
            assert (await chat(w)).status == 200
            assert (await w.client.get(f"{w.waker.url}/api/tags", headers=AUTH)).status == 200
            text = await (await w.client.get(f"{w.waker.url}/metrics", headers=AUTH)).text()
            # One chat measured; the model list is not use.
            assert "gpu_waker_upstream_first_byte_seconds_count 1.0" in text
            assert "gpu_waker_upstream_duration_seconds_count 1.0" in text

    run(scenario)


def test_ollama_never_sees_the_clients_token(moto_ec2: MotoEc2, tmp_path: Path) -> None:
    """Worker mode, built from the command line as deployed: the token is the proxy's, Ollama
    gets the request without it (only the gate forwards it, to the AWS-side gpu-waker)."""

    async def scenario() -> None:
        front = Ec2Front(moto_ec2.url)
        await front.start()
        ollama = FakeOllama(moto_ec2)
        ollama.start()
        argv = cli(
            front, tmp_path, "--instance-id", moto_ec2.instance_id, "--upstream-url", ollama.url
        )
        waker = await start_cli(argv)
        try:
            async with aiohttp.ClientSession() as client:
                reply = await client.post(f"{waker.url}/api/chat", json=ONE_SHOT, headers=AUTH)
                assert reply.status == 200
            assert ollama.authorizations == [None]
        finally:
            await waker.close()
            await ollama.close()
            await front.close()

    run(scenario)
