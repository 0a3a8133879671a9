"""Loopback stand-ins for the outside world of the controller.

- :class:`Ec2Front`: an HTTP front of a real moto EC2 server (ThreadedMotoServer on loopback)
  that counts the EC2 actions it forwards (also per instance), can answer one action (for one
  instance) with an EC2 error instead (InsufficientInstanceCapacity is not something moto
  simulates), and can report a running instance as ``pending`` (moto starts instances at once).
- :class:`FakeOllama`: an aiohttp server speaking the few Ollama routes the proxy uses, which
  comes up only after the moto instance is running (plus a boot delay) and goes away when it
  stops, and whose streams can be held mid-way by a gate. With a ``token`` it stands for the
  AWS-side gpu-waker behind a gate: ``/healthz`` without, everything else with the token.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import boto3
from aiohttp import web
from moto.server import ThreadedMotoServer

REGION = "us-west-2"
EC2_ERROR = """<?xml version="1.0" encoding="UTF-8"?>
<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors>
<RequestID>00000000-0000-0000-0000-000000000000</RequestID></Response>"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_kubeconfig(path: Path, port: int, token: str = "sa-token") -> Path:  # noqa: S107
    """A kubeconfig for a loopback API on ``port`` with a bearer token (written to ``path``)."""
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "c",
                "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
                "users": [{"name": "u", "user": {"token": token}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
            }
        )
    )
    return path


async def start_site(app: web.Application, port: int = 0) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, int(runner.addresses[0][1])


@dataclass
class Fault:
    action: str
    code: str
    message: str
    status: int = 500
    instance_id: str | None = None
    """Only calls naming this instance (None: every call of the action)."""


@dataclass(frozen=True)
class Ec2Call:
    action: str
    instance_id: str | None
    """InstanceId.1 of the call."""
    authorization: str
    security_token: str | None


class Ec2Front:
    """Counts and forwards EC2 Query API calls to moto; ``fault`` answers one action itself."""

    def __init__(self, moto_url: str) -> None:
        self.moto_url = moto_url
        self.calls: Counter[str] = Counter()
        """Action -> requests seen (including faulted ones and botocore retries)."""
        self.forwarded: Counter[str] = Counter()
        """Action -> requests that reached moto."""
        self.fault: Fault | None = None
        self.seen: list[Ec2Call] = []
        """Every call, in order, with the instance it names and its credentials."""
        self.report_pending: set[str] = set()
        """Instances that DescribeInstances reports ``pending`` while moto has them running."""
        self.session: aiohttp.ClientSession | None = None
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        self.session = aiohttp.ClientSession()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self.runner, port = await start_site(app)
        self.url = f"http://127.0.0.1:{port}"

    async def close(self) -> None:
        if self.runner:
            await self.runner.cleanup()
        if self.session:
            await self.session.close()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        form = await request.post()
        action = str(form.get("Action", "?"))
        instance = form.get("InstanceId.1")
        instance_id = str(instance) if instance is not None else None
        self.calls[action] += 1
        self.seen.append(
            Ec2Call(
                action,
                instance_id,
                request.headers.get("Authorization", ""),
                request.headers.get("X-Amz-Security-Token"),
            )
        )
        fault = self.fault
        if (
            fault is not None
            and fault.action == action
            and fault.instance_id in (None, instance_id)
        ):
            text = EC2_ERROR.format(code=fault.code, message=fault.message)
            return web.Response(status=fault.status, text=text, content_type="text/xml")
        self.forwarded[action] += 1
        assert self.session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
        async with self.session.request(
            request.method, f"{self.moto_url}{request.rel_url}", headers=headers, data=body
        ) as reply:
            data = await reply.read()
            if action == "DescribeInstances" and instance_id in self.report_pending:
                data = data.replace(
                    b"<instanceState><code>16</code><name>running</name></instanceState>",
                    b"<instanceState><code>0</code><name>pending</name></instanceState>",
                )
            return web.Response(status=reply.status, body=data, content_type=reply.content_type)

    def started(self, instance_id: str) -> int:
        """StartInstances calls naming ``instance_id`` (faulted ones included)."""
        return self.count("StartInstances", instance_id)

    def count(self, action: str, instance_id: str) -> int:
        return sum(1 for c in self.seen if c.action == action and c.instance_id == instance_id)


class MotoServer:
    """One moto server on loopback for the session (its EC2 backend loads once, slowly)."""

    def __init__(self) -> None:
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.server.start()
        host, port = self.server.get_host_and_port()
        self.url = f"http://{host}:{port}"

    def stop(self) -> None:
        self.server.stop()


# An AMI id moto ships in its default image list (moto/ec2/resources/amis.json).
MOTO_AMI = "ami-12c6146b"


class MotoEc2:
    """A fresh stopped 'GPU worker' (or control node) instance on the moto server."""

    def __init__(self, server: MotoServer, instance_type: str = "g4dn.xlarge") -> None:
        self.url = server.url
        self.client = boto3.client("ec2", region_name=REGION, endpoint_url=self.url)
        reply = self.client.run_instances(
            ImageId=MOTO_AMI, InstanceType=instance_type, MinCount=1, MaxCount=1
        )
        self.instance_id = reply["Instances"][0]["InstanceId"]
        self.client.stop_instances(InstanceIds=[self.instance_id])

    def state(self) -> str:
        reply = self.client.describe_instances(InstanceIds=[self.instance_id])
        return str(reply["Reservations"][0]["Instances"][0]["State"]["Name"])


@dataclass
class FakeOllama:
    """Ollama's API on a fixed loopback port, up only while the moto instance runs."""

    ec2: MotoEc2
    boot_delay: float = 0.2
    port: int = field(default_factory=free_port)
    loaded: list[str] = field(default_factory=list)
    chunks: int = 5
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    """Streams write their last chunk only once this is set (it starts set)."""
    produced: list[int] = field(default_factory=list)
    token: str | None = None
    """Set: stands for the AWS-side gpu-waker (``/healthz`` open, the rest needs the token)."""
    authorizations: list[str | None] = field(default_factory=list)
    """The Authorization header of every chat/generate request (None: there was none)."""
    front: Ec2Front | None = None
    """Set: an instance this front reports ``pending`` is not up yet (still booting)."""
    stays_up: bool = False
    """Keep serving after the instance stops (a stream cut off by hand mid-way, say)."""
    runner: web.AppRunner | None = None
    _watch: asyncio.Task[None] | None = None

    def __post_init__(self) -> None:
        self.gate.set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._check_token])
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/api/version", self._version)
        app.router.add_get("/api/tags", self._tags)
        app.router.add_get("/api/ps", self._ps)
        app.router.add_post("/api/chat", self._chat)
        app.router.add_post("/api/generate", self._chat)
        return app

    @web.middleware
    async def _check_token(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path in ("/api/chat", "/api/generate"):
            self.authorizations.append(request.headers.get("Authorization"))
        if (
            self.token is not None
            and request.path != "/healthz"
            and request.headers.get("Authorization") != f"Bearer {self.token}"
        ):
            return web.json_response({"error": "missing or wrong bearer token"}, status=401)
        return await handler(request)

    async def _healthz(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "state": "stopped"})

    async def _version(self, _: web.Request) -> web.Response:
        return web.json_response({"version": "0.32.15"})

    async def _tags(self, _: web.Request) -> web.Response:
        return web.json_response({"models": [{"name": "llama3.1:8b", "size": 4920753328}]})

    async def _ps(self, _: web.Request) -> web.Response:
        return web.json_response({"models": [{"name": name} for name in self.loaded]})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        payload = await request.json()
        if payload.get("stream") is False:
            return web.json_response({"message": {"content": "hello"}, "done": True})
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        for i in range(self.chunks):
            if i == self.chunks - 1:
                await self.gate.wait()
            line = {"message": {"content": f"part-{i}"}, "done": i == self.chunks - 1}
            await response.write((json.dumps(line) + "\n").encode())
            self.produced.append(i)
        await response.write_eof()
        return response

    async def _follow(self) -> None:
        while True:
            state = await asyncio.to_thread(self.ec2.state)
            if self.front is not None and self.ec2.instance_id in self.front.report_pending:
                state = "pending"
            if state == "running" and self.runner is None:
                await asyncio.sleep(self.boot_delay)
                self.runner, _ = await start_site(self.app(), self.port)
            elif state != "running" and self.runner is not None and not self.stays_up:
                await self.runner.cleanup()
                self.runner = None
            await asyncio.sleep(0.05)

    def start(self) -> None:
        self._watch = asyncio.ensure_future(self._follow())

    async def close(self) -> None:
        if self._watch:
            self._watch.cancel()
            await asyncio.gather(self._watch, return_exceptions=True)
        if self.runner:
            await self.runner.cleanup()


def read_json_lines(data: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in data.decode().splitlines() if line.strip()]
