"""Shared set-up: fake AWS credentials (boto3 must never reach IMDS or a real account), and the
controller + proxy started on loopback against moto and the fake Ollama."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from boto3.session import Session

from gpu_waker.__main__ import build, parser
from gpu_waker.clock import FakeClock
from gpu_waker.cluster import StaticCluster
from gpu_waker.controller import ControllerSettings, PowerController
from gpu_waker.ec2 import Ec2Power, ec2_client
from gpu_waker.proxy import make_app, upstream_session
from tests.fakes import REGION, Ec2Front, FakeOllama, MotoEc2, MotoServer, start_site

TOKEN = "test-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
FAST = ControllerSettings(
    idle_stop_seconds=600,
    wake_timeout_seconds=20,
    poll_seconds=0.05,
    reconcile_seconds=3600,  # the tests call reconcile() themselves
    probe_timeout_seconds=1,
    ready_ttl_seconds=0.5,
    backoff_base_seconds=10,
)


FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_EC2_METADATA_DISABLED": "true",
}


@pytest.fixture(autouse=True, scope="session")
def fake_aws_credentials() -> None:
    """boto3 must never reach IMDS or a real account (session-wide: the moto server is too)."""
    os.environ.update(FAKE_AWS_ENV)


@pytest.fixture(scope="session")
def moto_server() -> Any:
    server = MotoServer()
    yield server
    server.stop()


@pytest.fixture
def moto_ec2(moto_server: MotoServer, fake_aws_credentials: None) -> MotoEc2:
    return MotoEc2(moto_server)


async def shut_down(
    controller: PowerController, runner: web.AppRunner, session: aiohttp.ClientSession
) -> None:
    """Cancel a wake in progress, stop the proxy, close its upstream session."""
    task = controller._wake_task
    if task is not None and not task.done():
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    await runner.cleanup()
    await session.close()


@dataclass
class Waker:
    controller: PowerController
    url: str
    cluster: StaticCluster
    clock: FakeClock
    runner: web.AppRunner
    session: aiohttp.ClientSession

    async def close(self) -> None:
        await shut_down(self.controller, self.runner, self.session)


async def start_waker(
    front: Ec2Front,
    instance_id: str,
    upstream: str,
    *,
    settings: ControllerSettings = FAST,
    clock: FakeClock | None = None,
) -> Waker:
    session = upstream_session(60)
    cluster = StaticCluster(url=upstream)
    clock = clock or FakeClock()
    controller = PowerController(
        power=Ec2Power(instance_id, ec2_client(REGION, front.url)),
        cluster=cluster,
        session=session,
        settings=settings,
        clock=clock,
    )
    runner, port = await start_site(make_app(controller, session, TOKEN))
    return Waker(controller, f"http://127.0.0.1:{port}", cluster, clock, runner, session)


@dataclass
class World:
    ec2: MotoEc2
    front: Ec2Front
    ollama: FakeOllama
    waker: Waker
    client: aiohttp.ClientSession


@asynccontextmanager
async def world(
    ec2: MotoEc2, *, boot_delay: float = 0.2, settings: ControllerSettings = FAST
) -> AsyncIterator[World]:
    front = Ec2Front(ec2.url)
    await front.start()
    ollama = FakeOllama(ec2, boot_delay=boot_delay)
    ollama.start()
    waker = await start_waker(front, ec2.instance_id, ollama.url, settings=settings)
    client = aiohttp.ClientSession()
    try:
        yield World(ec2, front, ollama, waker, client)
    finally:
        await client.close()
        await waker.close()
        await ollama.close()
        await front.close()


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(scenario())


@dataclass
class Running:
    """A controller and its proxy made from command-line options (``build``), on loopback."""

    controller: PowerController
    url: str
    clock: FakeClock
    runner: web.AppRunner
    session: aiohttp.ClientSession

    async def close(self) -> None:
        await shut_down(self.controller, self.runner, self.session)


def cli(front: Ec2Front, token_dir: Path, *options: str) -> list[str]:
    """Options as the IaC writes them, plus what points at the loopback fakes and is fast."""
    token_file = token_dir / "token"
    token_file.write_text(TOKEN + "\n")
    return [
        "--region", REGION,
        "--ec2-endpoint-url", front.url,
        "--token-file", str(token_file),
        "--poll-seconds", "0.05",
        "--reconcile-seconds", "3600",  # the tests call reconcile() themselves
        "--wake-timeout-seconds", str(FAST.wake_timeout_seconds),
        "--upstream-read-timeout-seconds", "60",
        *options,
    ]  # fmt: skip


async def start_cli(
    argv: list[str], *, clock: FakeClock | None = None, aws: Session | None = None
) -> Running:
    clock = clock or FakeClock()
    service = build(parser().parse_args(argv), clock=clock, aws=aws)
    # What the command line does not set: as fast as the other tests.
    service.controller.settings = replace(
        service.controller.settings,
        probe_timeout_seconds=FAST.probe_timeout_seconds,
        ready_ttl_seconds=FAST.ready_ttl_seconds,
        backoff_base_seconds=FAST.backoff_base_seconds,
    )
    runner, port = await start_site(service.app)
    return Running(service.controller, f"http://127.0.0.1:{port}", clock, runner, service.session)
