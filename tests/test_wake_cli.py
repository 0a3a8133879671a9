"""``./dev wake`` (tools/wake.py): starts the sleeping AWS side for a ``pulumi up`` against a
real moto EC2 on loopback, through the aws-gpu stack's outputs as the Pulumi CLI prints them,
and waits for gpu-waker's /healthz (a loopback HTTP server that answers only once told to)."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.backup_store import fake_pulumi, run_module
from tests.moto_server import MotoServer
from tools import wake

# An AMI moto ships (moto/ec2/resources/amis.json); any instance type is accepted.
MOTO_AMI = "ami-12c6146b"


class _Healthz(http.server.BaseHTTPRequestHandler):
    up = False

    def do_GET(self) -> None:
        self.send_response(200 if type(self).up and self.path == "/healthz" else 503)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def healthz() -> Iterator[tuple[str, type[_Healthz]]]:
    handler = type("Healthz", (_Healthz,), {"up": False})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", handler
    server.shutdown()


@pytest.fixture(scope="module")
def ec2_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    server = MotoServer(tmp_path_factory.mktemp("moto") / "moto.log")
    yield server
    server.stop()


def _stopped_nodes(server: MotoServer) -> tuple[str, str]:
    ec2 = server.client("ec2")
    reply = ec2.run_instances(ImageId=MOTO_AMI, InstanceType="t3a.small", MinCount=2, MaxCount=2)
    ids = [i["InstanceId"] for i in reply["Instances"]]
    ec2.stop_instances(InstanceIds=ids)
    return ids[0], ids[1]


def _state(server: MotoServer, instance_id: str) -> str:
    reply = server.client("ec2").describe_instances(InstanceIds=[instance_id])
    return reply["Reservations"][0]["Instances"][0]["State"]["Name"]


def _outputs(control: str, worker: str, url: str, *, sleeps: bool = True) -> dict[str, Any]:
    gate = {"sleeps": sleeps}
    if sleeps:
        gate |= {"region": "us-west-2", "controlInstanceId": control, "workerInstanceId": worker}
    return {"region": "us-west-2", "gpuWakerUrl": url, "wakeGate": gate}


def test_wake_starts_the_control_node_only_and_waits_for_gpu_waker(
    ec2_server: MotoServer, healthz: tuple[str, type[_Healthz]], tmp_path: Path
) -> None:
    control, worker = _stopped_nodes(ec2_server)
    url, handler = healthz
    bin_dir = tmp_path / "bin"
    fake_pulumi(bin_dir, {"aws-gpu": _outputs(control, worker, url)})
    env = ec2_server.env() | {"PATH": f"{bin_dir}:/usr/bin:/bin"}
    # gpu-waker answers only a moment after the start (the node boots).
    timer = threading.Timer(1.0, lambda: setattr(handler, "up", True))
    timer.start()
    result = run_module("tools.wake", "--timeout", "60", env=env)
    timer.cancel()
    assert result.returncode == 0, result.stderr
    assert f"control node {control}: stopped -> starting" in result.stdout
    assert "the AWS side is awake" in result.stdout
    assert _state(ec2_server, control) in ("pending", "running")
    assert _state(ec2_server, worker) == "stopped"  # gpu-waker starts it on demand


def test_wake_worker_starts_both_and_a_running_node_is_left_alone(
    ec2_server: MotoServer, healthz: tuple[str, type[_Healthz]]
) -> None:
    control, worker = _stopped_nodes(ec2_server)
    url, handler = healthz
    handler.up = True
    lines: list[str] = []
    ec2 = ec2_server.client("ec2")
    wake.wake(_outputs(control, worker, url), ec2, worker=True, timeout=5, say=lines.append)
    assert _state(ec2_server, worker) in ("pending", "running")
    lines.clear()
    wake.wake(_outputs(control, worker, url), ec2, worker=False, timeout=5, say=lines.append)
    assert any("is already" in line for line in lines), lines
    assert not any("stopped -> starting" in line for line in lines)


def test_wake_gives_up_naming_the_url_when_gpu_waker_never_answers(
    ec2_server: MotoServer, healthz: tuple[str, type[_Healthz]]
) -> None:
    control, worker = _stopped_nodes(ec2_server)
    url, _ = healthz
    ticks = iter(range(0, 10_000, 5))
    with pytest.raises(wake.WakeError, match=rf"did not answer at {url}/healthz within 30 s"):
        wake.wake(
            _outputs(control, worker, url),
            ec2_server.client("ec2"),
            worker=False,
            timeout=30,
            say=lambda _: None,
            clock=lambda: float(next(ticks)),
            sleep=lambda _: None,
        )


def test_wake_names_a_missing_instance_and_an_always_on_side(
    ec2_server: MotoServer, healthz: tuple[str, type[_Healthz]]
) -> None:
    url, handler = healthz
    with pytest.raises(wake.WakeError, match="i-0123456789abcdef0"):
        wake.wake(
            _outputs("i-0123456789abcdef0", "i-0123456789abcdef1", url),
            ec2_server.client("ec2"),
            worker=False,
            timeout=5,
            say=lambda _: None,
        )
    lines: list[str] = []
    handler.up = True
    wake.wake(
        _outputs("", "", url, sleeps=False),
        ec2_server.client("ec2"),
        worker=False,
        timeout=5,
        say=lines.append,
    )
    assert lines[0] == "the control node never sleeps (gpuWaker.sleepAfterMinutes is null)"
