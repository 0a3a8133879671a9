"""Worker mode's self-sleep against a real moto EC2 server (injected clock): the control node
stops itself once the GPU worker has been stopped and unused for --sleep-after-minutes; never
while a stream is in flight, a GPU pod runs or is Pending, or the worker runs; one StopInstances,
on the control node's id only."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from gpu_waker.cluster import GpuPod, GpuPods, StaticCluster
from tests.conftest import AUTH, Running, cli, run, start_cli
from tests.fakes import Ec2Front, FakeOllama, Fault, MotoEc2, MotoServer

SLEEP_MINUTES = 30
SLEEP = SLEEP_MINUTES * 60
CHAT = {"model": "llama3.1:8b", "messages": [{"role": "user", "content": "hi"}]}


class BrokenCluster(StaticCluster):
    async def gpu_pods(self) -> GpuPods:
        raise RuntimeError("API server unreachable")


@dataclass
class SleepWorld:
    control: MotoEc2
    worker: MotoEc2
    front: Ec2Front
    ollama: FakeOllama
    waker: Running
    client: aiohttp.ClientSession

    @property
    def cluster(self) -> StaticCluster:
        cluster = self.waker.controller.cluster
        assert isinstance(cluster, StaticCluster)
        return cluster

    async def pass_time(self, seconds: float) -> None:
        self.waker.clock.advance(seconds)
        await self.waker.controller.reconcile()

    def sleeps(self) -> int:
        return self.front.count("StopInstances", self.control.instance_id)

    async def metric(self, name: str) -> str:
        reply = await self.client.get(f"{self.waker.url}/metrics", headers=AUTH)
        return next(line for line in (await reply.text()).splitlines() if line.startswith(name))


@asynccontextmanager
async def sleep_world(server: MotoServer, tmp: Path) -> AsyncIterator[SleepWorld]:
    control, worker = MotoEc2(server, "t4g.small"), MotoEc2(server)
    control.client.start_instances(InstanceIds=[control.instance_id])  # it runs this waker
    front = Ec2Front(server.url)
    await front.start()
    ollama = FakeOllama(worker)
    ollama.start()
    argv = cli(
        front,
        tmp,
        "--instance-id", worker.instance_id,
        "--upstream-url", ollama.url,
        "--sleep-instance-id", control.instance_id,
        "--sleep-after-minutes", str(SLEEP_MINUTES),
        "--idle-stop-minutes", "10",
    )  # fmt: skip
    waker = await start_cli(argv)
    client = aiohttp.ClientSession()
    try:
        yield SleepWorld(control, worker, front, ollama, waker, client)
    finally:
        await client.close()
        await waker.close()
        await ollama.close()
        await front.close()


def test_the_control_node_sleeps_once_after_n_minutes_with_the_worker_stopped_and_idle(
    moto_server: MotoServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> tuple[str, str]:
        async with sleep_world(moto_server, tmp_path) as w:
            await w.pass_time(0)
            await w.pass_time(SLEEP - 60)
            assert w.front.calls["StopInstances"] == 0
            assert w.control.state() == "running"
            await w.pass_time(61)
            assert w.sleeps() == 1
            assert w.control.state() == "stopped"
            # Sent once: later checks do not send it again.
            for _ in range(3):
                await w.pass_time(SLEEP)
            assert w.front.calls["StopInstances"] == 1
            assert w.front.count("StopInstances", w.worker.instance_id) == 0
            assert w.worker.state() == "stopped"
            assert await w.metric("gpu_waker_sleeps_total") == "gpu_waker_sleeps_total 1.0"
            return w.control.instance_id, w.worker.instance_id

    with caplog.at_level(logging.INFO, logger="gpu_waker"):
        control, worker = asyncio.run(scenario())
    # One state change, logged with its reason.
    assert [r.getMessage() for r in caplog.records if "sleeping" in r.getMessage()] == [
        f"control node {control}: running -> sleeping (GPU worker {worker} stopped and unused "
        "for 30.0 min: no request, no stream, no GPU pod)"
    ]


def test_no_sleep_while_a_stream_is_in_flight(moto_server: MotoServer, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with sleep_world(moto_server, tmp_path) as w:
            w.ollama.gate.clear()
            w.ollama.stays_up = True  # the stream survives the worker's stop below
            stream = await w.client.post(
                f"{w.waker.url}/api/chat", json={**CHAT, "stream": True}, headers=AUTH
            )
            await stream.content.readline()
            # The worker is stopped under the stream (by hand); EC2 says stopped.
            w.worker.client.stop_instances(InstanceIds=[w.worker.instance_id])
            await w.pass_time(0)
            await w.pass_time(2 * SLEEP)
            assert w.waker.controller.state == "stopped"
            assert w.front.calls["StopInstances"] == 0
            # The stream ends: the sleep period counts from its end.
            w.ollama.gate.set()
            await stream.read()
            await w.pass_time(SLEEP - 60)
            assert w.front.calls["StopInstances"] == 0
            await w.pass_time(61)
            assert w.sleeps() == 1

    run(scenario)


def test_no_sleep_while_a_gpu_pod_runs_or_is_pending_or_unknown(
    moto_server: MotoServer, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with sleep_world(moto_server, tmp_path) as w:
            # A GPU pod runs (on the homelab's offload, say, waiting to be placed): no sleep.
            w.cluster.pods = GpuPods((GpuPod("u1", "jobs/infer", pending=False),))
            await w.pass_time(0)
            await w.pass_time(2 * SLEEP)
            assert w.front.calls["StopInstances"] == 0
            # A Pending one the worker could not be started for (no capacity): no sleep.
            w.front.fault = Fault(
                "StartInstances", "InsufficientInstanceCapacity", "no g4dn.xlarge capacity"
            )
            w.cluster.pods = GpuPods((GpuPod("u2", "jobs/train", pending=True),))
            await w.pass_time(0)
            task = w.waker.controller._wake_task
            assert task is not None
            await asyncio.gather(task, return_exceptions=True)
            assert w.worker.state() == "stopped"
            await w.pass_time(2 * SLEEP)
            assert w.front.count("StopInstances", w.control.instance_id) == 0
            # The pods list cannot be read: not sleeping while unknown.
            readable = w.cluster
            w.waker.controller.cluster = BrokenCluster(url=readable.url)
            await w.pass_time(2 * SLEEP)
            assert w.front.count("StopInstances", w.control.instance_id) == 0
            # Readable and empty again: the period counts from the last pod.
            readable.pods = GpuPods()
            w.waker.controller.cluster = readable
            await w.pass_time(60)
            assert w.sleeps() == 0
            await w.pass_time(SLEEP)
            assert w.sleeps() == 1

    run(scenario)


def test_no_sleep_while_the_worker_runs_or_is_pending(
    moto_server: MotoServer, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with sleep_world(moto_server, tmp_path) as w:
            reply = await w.client.post(
                f"{w.waker.url}/api/chat", json={**CHAT, "stream": False}, headers=AUTH
            )
            assert reply.status == 200
            # Running with a model in memory (no idle stop): no sleep however long.
            w.ollama.loaded = ["llama3.1:8b"]
            await w.pass_time(3 * SLEEP)
            assert w.worker.state() == "running"
            # EC2 says pending (booting): no sleep.
            w.front.report_pending.add(w.worker.instance_id)
            await w.pass_time(3 * SLEEP)
            assert w.front.calls["StopInstances"] == 0
            # The model unloads: the worker is stopped when idle, then the node sleeps.
            w.front.report_pending.clear()
            w.ollama.loaded = []
            await w.pass_time(0)
            assert w.front.count("StopInstances", w.worker.instance_id) == 1
            assert w.sleeps() == 0
            await w.pass_time(0)  # the next check sees it stopped: the period starts
            await w.pass_time(SLEEP - 60)
            assert w.sleeps() == 0
            await w.pass_time(61)
            assert w.sleeps() == 1

    run(scenario)
