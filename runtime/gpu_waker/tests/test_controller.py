"""The controller's decisions against a scripted EC2 (no network but the fake Ollama's)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web

from gpu_waker.clock import FakeClock
from gpu_waker.cluster import GpuPod, GpuPods, StaticCluster
from gpu_waker.controller import ControllerSettings, PowerController, WakeError
from gpu_waker.ec2 import InstanceMissing, InstanceState, StartRefused
from tests.conftest import FAST, run
from tests.fakes import start_site


@dataclass
class ScriptedEc2:
    """Describe answers from a script (the last one repeats); records start/stop calls."""

    states: list[InstanceState]
    refuse: StartRefused | None = None
    missing: bool = False
    instance_id: str = "i-0123456789abcdef0"
    starts: int = 0
    stops: int = 0
    _script: Iterator[InstanceState] | None = field(default=None, repr=False)

    async def describe(self) -> InstanceState:
        if self.missing:
            raise InstanceMissing(f"GPU worker instance {self.instance_id} does not exist")
        if len(self.states) > 1:
            return self.states.pop(0)
        return self.states[0]

    async def start(self) -> None:
        self.starts += 1
        if self.refuse is not None:
            raise self.refuse
        self.states = [InstanceState("pending"), InstanceState("running")]

    async def stop(self) -> None:
        self.stops += 1
        self.states = [InstanceState("stopping"), InstanceState("stopped")]


async def ollama() -> tuple[web.AppRunner, str]:
    app = web.Application()

    async def version(_: web.Request) -> web.Response:
        return web.json_response({"version": "test"})

    async def ps(_: web.Request) -> web.Response:
        return web.json_response({"models": []})

    app.router.add_get("/api/version", version)
    app.router.add_get("/api/ps", ps)
    runner, port = await start_site(app)
    return runner, f"http://127.0.0.1:{port}"


async def controller_for(
    ec2: ScriptedEc2, url: str, session: aiohttp.ClientSession, clock: FakeClock | None = None
) -> PowerController:
    return PowerController(
        power=ec2,
        cluster=StaticCluster(url=url),
        session=session,
        settings=FAST,
        clock=clock or FakeClock(),
    )


def test_a_stopping_instance_is_waited_out_then_started() -> None:
    async def scenario() -> None:
        runner, url = await ollama()
        async with aiohttp.ClientSession() as session:
            ec2 = ScriptedEc2([InstanceState("stopping")] * 3 + [InstanceState("stopped")])
            controller = await controller_for(ec2, url, session)
            controller.state = "stopping"  # it stopped the worker a moment ago
            assert await controller.ensure_ready("POST /api/chat") == url
            assert ec2.starts == 1
        await runner.cleanup()

    run(scenario)


def test_an_instance_ec2_interrupted_is_not_started_and_the_client_is_told_why() -> None:
    async def scenario() -> None:
        async with aiohttp.ClientSession() as session:
            ec2 = ScriptedEc2([InstanceState("stopped", "Server.SpotInstanceShutdown")])
            controller = await controller_for(ec2, "http://127.0.0.1:9", session)
            with pytest.raises(WakeError) as caught:
                await controller.ensure_ready("POST /api/chat")
            assert caught.value.status == 503
            assert "only EC2 restarts it" in caught.value.reason
            assert caught.value.retry_after == FAST.backoff_base_seconds
            assert ec2.starts == 0
            assert controller.state == "unavailable"

    run(scenario)


def test_a_missing_instance_is_an_error_naming_it() -> None:
    async def scenario() -> None:
        async with aiohttp.ClientSession() as session:
            ec2 = ScriptedEc2([InstanceState("stopped")], missing=True)
            controller = await controller_for(ec2, "http://127.0.0.1:9", session)
            with pytest.raises(WakeError) as caught:
                await controller.ensure_ready("POST /api/chat")
            assert caught.value.status == 502
            assert ec2.instance_id in caught.value.reason

    run(scenario)


def test_a_permanent_refusal_is_not_retried_later() -> None:
    async def scenario() -> None:
        async with aiohttp.ClientSession() as session:
            refusal = StartRefused("UnauthorizedOperation", "no", retryable=False)
            ec2 = ScriptedEc2([InstanceState("stopped")], refuse=refusal)
            controller = await controller_for(ec2, "http://127.0.0.1:9", session)
            with pytest.raises(WakeError) as caught:
                await controller.ensure_ready("POST /api/chat")
            assert caught.value.status == 502
            assert caught.value.retry_after is None
            assert "UnauthorizedOperation" in caught.value.reason

    run(scenario)


def test_capacity_backoff_doubles_up_to_the_cap() -> None:
    async def scenario() -> None:
        async with aiohttp.ClientSession() as session:
            refusal = StartRefused("InsufficientInstanceCapacity", "none", retryable=True)
            ec2 = ScriptedEc2([InstanceState("stopped")], refuse=refusal)
            clock = FakeClock()
            controller = await controller_for(ec2, "http://127.0.0.1:9", session, clock)
            waits = []
            for _ in range(7):
                with pytest.raises(WakeError) as caught:
                    await controller.ensure_ready("POST /api/chat")
                assert caught.value.retry_after is not None
                waits.append(caught.value.retry_after)
                clock.advance(caught.value.retry_after)
            assert waits == [10, 20, 40, 80, 160, 300, 300]
            assert ec2.starts == 7

    run(scenario)


def test_a_restarted_controller_finds_the_instance_pending_and_does_not_start_it() -> None:
    async def scenario() -> None:
        runner, url = await ollama()
        async with aiohttp.ClientSession() as session:
            ec2 = ScriptedEc2([InstanceState("pending")] * 3 + [InstanceState("running")])
            controller = await controller_for(ec2, "http://127.0.0.1:9", session)
            controller.cluster = StaticCluster(url=url)
            assert await controller.ensure_ready("POST /api/chat") == url
            assert ec2.starts == 0
        await runner.cleanup()

    run(scenario)


def test_a_pending_gpu_pod_wakes_the_worker_once() -> None:
    async def scenario() -> None:
        runner, url = await ollama()
        async with aiohttp.ClientSession() as session:
            ec2 = ScriptedEc2([InstanceState("stopped")])
            controller = await controller_for(ec2, url, session)
            assert isinstance(controller.cluster, StaticCluster)
            pod = GpuPod("uid-1", "jobs/train", pending=True)
            controller.cluster.pods = GpuPods((pod,))
            await controller.reconcile()
            task = controller._wake_task
            assert task is not None
            assert await asyncio.wait_for(task, 5) == url
            assert ec2.starts == 1
            # The same pod, still Pending after the worker was stopped again, wakes nothing.
            ec2.states = [InstanceState("stopped")]
            controller.state = "stopped"
            await controller.reconcile()
            assert not controller.waking
            assert ec2.starts == 1
        await runner.cleanup()

    run(scenario)


def test_no_stop_while_the_gpu_pods_are_unknown() -> None:
    class BrokenCluster(StaticCluster):
        async def gpu_pods(self) -> GpuPods:
            raise RuntimeError("API server unreachable")

    async def scenario() -> None:
        runner, url = await ollama()
        async with aiohttp.ClientSession() as session:
            ec2 = ScriptedEc2([InstanceState("running")])
            clock = FakeClock()
            controller = await controller_for(ec2, url, session, clock)
            controller.cluster = BrokenCluster(url=url)
            clock.advance(FAST.idle_stop_seconds * 3)
            await controller.reconcile()
            assert ec2.stops == 0
            controller.cluster = StaticCluster(url=url)
            await controller.reconcile()
            assert ec2.stops == 1
        await runner.cleanup()

    run(scenario)


def test_without_power_management_nothing_is_started_or_stopped() -> None:
    async def scenario() -> None:
        runner, url = await ollama()
        async with aiohttp.ClientSession() as session:
            ec2 = ScriptedEc2([InstanceState("stopped")])
            clock = FakeClock()
            controller = PowerController(
                power=ec2,
                cluster=StaticCluster(url="http://127.0.0.1:9"),
                session=session,
                settings=ControllerSettings(**{**FAST.__dict__, "manage_power": False}),
                clock=clock,
            )
            with pytest.raises(WakeError) as caught:
                await controller.ensure_ready("POST /api/chat")
            assert caught.value.status == 503
            assert "power management is off" in caught.value.reason
            ec2.states = [InstanceState("running")]
            controller.cluster = StaticCluster(
                url=url, pods=GpuPods((GpuPod("u", "jobs/x", pending=True),))
            )
            clock.advance(FAST.idle_stop_seconds * 2)
            controller.cluster = StaticCluster(url=url)
            await controller.reconcile()
            assert (ec2.starts, ec2.stops) == (0, 0)
            assert await controller.ensure_ready("POST /api/chat") == url
        await runner.cleanup()

    run(scenario)
