"""Gate mode (the homelab's gpu-waker in front of the sleeping AWS side) against a real moto EC2
server on loopback, a fake AWS-side gpu-waker that comes up only once the control node runs, and
a real HTTP client: one start of the control node and one of the GPU worker per wake, the token
checked and forwarded, streams through, a refused worker start tolerated, a restart mid-wake,
Pending pods that may be offloaded to AWS (Liqo's toleration) waking it and others not."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from gpu_waker.cluster import LIQO_VIRTUAL_NODE_TAINT_KEY
from tests.conftest import AUTH, TOKEN, Running, cli, run, start_cli
from tests.fakes import (
    Ec2Front,
    FakeOllama,
    Fault,
    MotoEc2,
    MotoServer,
    read_json_lines,
    start_site,
    write_kubeconfig,
)

CHAT = {"model": "llama3.1:8b", "messages": [{"role": "user", "content": "hi"}]}
ONE_SHOT = {**CHAT, "stream": False}


@dataclass
class GateWorld:
    control: MotoEc2
    worker: MotoEc2
    front: Ec2Front
    aws_waker: FakeOllama
    """The AWS-side gpu-waker as the gate sees it: up once the control node runs."""
    gate: Running
    client: aiohttp.ClientSession
    argv: list[str]

    async def chat(self, payload: dict[str, Any] = ONE_SHOT) -> aiohttp.ClientResponse:
        return await self.client.post(f"{self.gate.url}/api/chat", json=payload, headers=AUTH)

    def starts(self) -> tuple[int, int]:
        """StartInstances calls of (control node, GPU worker)."""
        return (
            self.front.started(self.control.instance_id),
            self.front.started(self.worker.instance_id),
        )


def gate_options(front: Ec2Front, tmp: Path, control: str, worker: str, upstream: str) -> list[str]:
    return cli(
        front,
        tmp,
        "--mode", "gate",
        "--instance-id", control,
        "--also-start-instance-ids", worker,
        "--upstream-url", upstream,
    )  # fmt: skip


@asynccontextmanager
async def gate_world(
    server: MotoServer, tmp: Path, *, boot_delay: float = 0.2, extra: tuple[str, ...] = ()
) -> AsyncIterator[GateWorld]:
    control, worker = MotoEc2(server, "t4g.small"), MotoEc2(server)
    front = Ec2Front(server.url)
    await front.start()
    aws_waker = FakeOllama(control, boot_delay=boot_delay, token=TOKEN, front=front)
    aws_waker.start()
    argv = [
        *gate_options(front, tmp, control.instance_id, worker.instance_id, aws_waker.url),
        *extra,
    ]
    gate = await start_cli(argv)
    client = aiohttp.ClientSession()
    try:
        yield GateWorld(control, worker, front, aws_waker, gate, client, argv)
    finally:
        await client.close()
        await gate.close()
        await aws_waker.close()
        await front.close()


def test_a_cold_request_starts_the_control_node_and_the_worker_once_and_is_answered(
    moto_server: MotoServer, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with gate_world(moto_server, tmp_path) as w:
            assert (w.control.state(), w.worker.state()) == ("stopped", "stopped")
            reply = await w.chat()
            assert reply.status == 200, await reply.text()
            assert (await reply.json())["message"]["content"] == "hello"
            assert w.starts() == (1, 1)
            assert w.front.calls["StartInstances"] == 2
            # The control node first, the worker right after it, in the same wake.
            starts = [c.instance_id for c in w.front.seen if c.action == "StartInstances"]
            assert starts == [w.control.instance_id, w.worker.instance_id]
            assert (w.control.state(), w.worker.state()) == ("running", "running")
            assert w.gate.controller.state == "ready"
            # Warm: more requests start nothing.
            for _ in range(3):
                assert (await w.chat()).status == 200
            assert w.starts() == (1, 1)
            # The gate never stops anything, however long nothing happens.
            w.gate.clock.advance(24 * 3600)
            await w.gate.controller.reconcile()
            assert w.front.calls["StopInstances"] == 0
            health = await (await w.client.get(f"{w.gate.url}/healthz")).json()
            assert health["mode"] == "gate"
            assert health["worker"] == w.control.instance_id

    run(scenario)


def test_fifty_concurrent_cold_requests_share_one_start_of_each(
    moto_server: MotoServer, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with gate_world(moto_server, tmp_path, boot_delay=0.5) as w:
            replies = await asyncio.gather(*(w.chat() for _ in range(50)))
            assert [r.status for r in replies] == [200] * 50
            bodies = await asyncio.gather(*(r.json() for r in replies))
            assert all(b["done"] for b in bodies)
            assert w.starts() == (1, 1)

    run(scenario)


def test_a_stream_arrives_chunk_by_chunk_through_the_gate(
    moto_server: MotoServer, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with gate_world(moto_server, tmp_path) as w:
            w.aws_waker.gate.clear()  # the upstream holds its last chunk back
            reply = await w.chat({**CHAT, "stream": True})
            assert reply.status == 200
            first = await asyncio.wait_for(reply.content.readline(), timeout=5)
            assert read_json_lines(first)[0]["message"]["content"] == "part-0"
            assert w.aws_waker.chunks - 1 not in w.aws_waker.produced
            w.aws_waker.gate.set()
            rest = read_json_lines(await reply.read())
            assert [line["message"]["content"] for line in rest] == [
                f"part-{i}" for i in range(1, w.aws_waker.chunks)
            ]

    run(scenario)


def test_a_request_without_the_token_gets_401_and_starts_nothing(
    moto_server: MotoServer, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with gate_world(moto_server, tmp_path) as w:
            for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789"}):
                reply = await w.client.post(
                    f"{w.gate.url}/api/chat", json=ONE_SHOT, headers=headers
                )
                assert reply.status == 401
            await asyncio.sleep(0.3)
            assert w.front.calls["StartInstances"] == 0
            assert (w.control.state(), w.worker.state()) == ("stopped", "stopped")
            assert w.aws_waker.authorizations == []

    run(scenario)


def test_the_clients_token_reaches_the_aws_side_waker(
    moto_server: MotoServer, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with gate_world(moto_server, tmp_path) as w:
            assert (await w.chat()).status == 200
            # The fake AWS waker answers 401 without it; it saw the client's header as sent.
            assert w.aws_waker.authorizations == [f"Bearer {TOKEN}"]

    run(scenario)


def test_a_refused_worker_start_does_not_fail_the_request(
    moto_server: MotoServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        async with gate_world(moto_server, tmp_path) as w:
            w.front.fault = Fault(
                "StartInstances",
                "InsufficientInstanceCapacity",
                "We currently do not have sufficient g4dn.xlarge capacity in us-west-2a.",
                instance_id=w.worker.instance_id,
            )
            reply = await w.chat()
            assert reply.status == 200, await reply.text()
            # The control node started; the worker refused (EC2 answers 500: botocore retried
            # it, one attempt of the gate's, see the log below; the AWS-side waker starts it
            # when the request reaches it).
            assert w.front.started(w.control.instance_id) == 1
            assert w.front.forwarded["StartInstances"] == 1
            assert (w.control.state(), w.worker.state()) == ("running", "stopped")

    with caplog.at_level(logging.WARNING, logger="gpu_waker"):
        run(scenario)
    refusals = [r.getMessage() for r in caplog.records if "could not start" in r.getMessage()]
    assert len(refusals) == 1
    assert "InsufficientInstanceCapacity" in refusals[0]


def test_a_gate_restarted_mid_wake_starts_nothing_again(
    moto_server: MotoServer, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with gate_world(moto_server, tmp_path, boot_delay=0.5) as w:
            # EC2 reports the control node pending (booting) until released below.
            w.front.report_pending.add(w.control.instance_id)
            first = asyncio.ensure_future(w.chat())
            while w.starts() != (1, 1):
                await asyncio.sleep(0.02)
            # The gate dies mid-wake: its server, held request and wake task are gone.
            await w.gate.close()
            first.cancel()
            await asyncio.gather(first, return_exceptions=True)
            restarted = await start_cli(w.argv)
            try:
                held = asyncio.ensure_future(
                    w.client.post(f"{restarted.url}/api/chat", json=ONE_SHOT, headers=AUTH)
                )
                while restarted.controller.state != "starting":
                    await asyncio.sleep(0.02)
                assert not held.done()  # held while the control node is pending
                w.front.report_pending.clear()
                reply = await asyncio.wait_for(held, timeout=10)
                assert reply.status == 200
            finally:
                await restarted.close()
            assert w.starts() == (1, 1)

    run(scenario)


def _pod(name: str, *, tolerations: list[dict[str, str]] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "jobs", "uid": f"uid-{name}", "labels": {}},
        "spec": {
            "containers": [{"name": "c", "resources": {"limits": {"nvidia.com/gpu": "1"}}}],
            "tolerations": tolerations or [],
        },
        "status": {"phase": "Pending"},
    }


# Liqo's webhook adds this toleration to pods of offloaded namespaces
# (liqotech/liqo pkg/webhooks/pod/mutations.go@v1.2.0, getVirtualNodeToleration).
OFFLOADABLE = [{"key": LIQO_VIRTUAL_NODE_TAINT_KEY, "operator": "Exists", "effect": "NoExecute"}]


def test_only_pending_gpu_pods_that_tolerate_liqos_virtual_node_wake_aws(
    moto_server: MotoServer, tmp_path: Path
) -> None:
    pods: list[dict[str, Any]] = []

    async def all_pods(_: web.Request) -> web.Response:
        return web.json_response(
            {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": pods}
        )

    async def scenario() -> None:
        app = web.Application()
        app.router.add_get("/api/v1/pods", all_pods)
        api, port = await start_site(app)
        kubeconfig = tmp_path / "kubeconfig"
        write_kubeconfig(kubeconfig, port)
        async with gate_world(moto_server, tmp_path, extra=("--kubeconfig", str(kubeconfig))) as w:
            controller = w.gate.controller
            # A homelab GPU pod waiting for a local GPU: not for AWS.
            pods.append(_pod("local-train"))
            await controller.reconcile()
            assert not controller.waking
            assert w.front.calls["StartInstances"] == 0
            # One that may run on the virtual node (offloaded to AWS): wakes both.
            pods.append(_pod("offloaded-train", tolerations=OFFLOADABLE))
            await controller.reconcile()
            task = controller._wake_task
            assert task is not None
            assert await asyncio.wait_for(task, 10) == w.aws_waker.url
            assert w.starts() == (1, 1)
        await api.cleanup()

    run(scenario)
