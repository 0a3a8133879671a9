"""``./dev wake``: start the sleeping AWS side before a ``pulumi up`` that changes something there
(SSH steps, objects in the AWS cluster, the kubeconfig refresh), and wait until gpu-waker on the
control node answers. It goes back to sleep by itself (``gpuWaker.sleepAfterMinutes``).

    ./dev wake [--stack aws-gpu] [--worker] [--timeout 600]

The instance ids and gpu-waker's address come from the aws-gpu stack's outputs ``wakeGate`` and
``gpuWakerUrl`` (Pulumi CLI); EC2 is called with the operator's own AWS credentials, and
``/healthz`` (no token) is reached over the mesh, as ``pulumi up`` reaches the node. ``--worker``
starts the GPU worker too (otherwise gpu-waker starts it on the first request). Exit 0 once
gpu-waker answers; 1 with the reason otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import ClientError

from tools.stack_outputs import StackOutputsError, read_stack_outputs

POLL_SECONDS = 5.0


class WakeError(RuntimeError):
    """A clear, expected failure (exit 1 with the message)."""


def healthy(url: str, timeout: float = 3.0) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=timeout) as reply:  # noqa: S310 - http(s) URL from the stack
            return reply.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _state(ec2: Any, instance_id: str) -> str:
    try:
        reply = ec2.describe_instances(InstanceIds=[instance_id])
    except ClientError as err:
        raise WakeError(f"instance {instance_id}: {err.response['Error']['Message']}") from None
    instances = [i for r in reply["Reservations"] for i in r["Instances"]]
    if not instances:
        raise WakeError(f"instance {instance_id} does not exist")
    return str(instances[0]["State"]["Name"])


def start(ec2: Any, instance_id: str, role: str, say: Callable[[str], None]) -> None:
    """StartInstances unless it is pending or running; a stop in progress is waited out first."""
    state = _state(ec2, instance_id)
    if state in ("shutting-down", "terminated"):
        raise WakeError(f"the {role} {instance_id} is {state}; `pulumi up -s aws-gpu` rebuilds it")
    if state == "stopping":
        say(f"{role} {instance_id} is stopping; waiting for it to stop first")
        ec2.get_waiter("instance_stopped").wait(
            InstanceIds=[instance_id], WaiterConfig={"Delay": POLL_SECONDS, "MaxAttempts": 60}
        )
        state = "stopped"
    if state == "stopped":
        try:
            ec2.start_instances(InstanceIds=[instance_id])
        except ClientError as err:
            error = err.response["Error"]
            raise WakeError(
                f"EC2 refused to start the {role}: {error['Code']}: {error['Message']}"
            ) from None
        say(f"{role} {instance_id}: stopped -> starting")
    else:
        say(f"{role} {instance_id} is already {state}")


def wake(
    outputs: dict[str, Any],
    ec2: Any,
    *,
    worker: bool,
    timeout: float,
    say: Callable[[str], None],
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    gate = outputs.get("wakeGate") or {}
    url = str(outputs["gpuWakerUrl"]).rstrip("/")
    if not gate.get("sleeps"):
        say("the control node never sleeps (gpuWaker.sleepAfterMinutes is null)")
        if healthy(url):
            say(f"gpu-waker answers at {url}")
            return
        raise WakeError(f"gpu-waker does not answer at {url}/healthz (is the mesh up?)")
    start(ec2, gate["controlInstanceId"], "control node", say)
    if worker:
        start(ec2, gate["workerInstanceId"], "GPU worker", say)
    deadline = clock() + timeout
    while not healthy(url):
        if clock() >= deadline:
            raise WakeError(
                f"gpu-waker did not answer at {url}/healthz within {timeout:.0f} s: is this "
                "machine on the mesh (./dev mesh-join), and is the control node booting "
                "(EC2 console, `journalctl -u gpu-waker` on the node)?"
            )
        sleep(POLL_SECONDS)
    say(f"gpu-waker answers at {url}: the AWS side is awake")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="./dev wake", description=__doc__)
    parser.add_argument("--stack", default="aws-gpu")
    parser.add_argument("--outputs", type=Path, help="the stack's outputs as JSON (else the CLI)")
    parser.add_argument("--worker", action="store_true", help="start the GPU worker too")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--endpoint-url", help="EC2 endpoint (tests only)")
    args = parser.parse_args(argv)
    try:
        if args.outputs is not None:
            outputs = json.loads(args.outputs.read_text())
        else:
            try:
                outputs = read_stack_outputs(args.stack, instead="pass --outputs FILE")
            except StackOutputsError as err:
                raise WakeError(str(err)) from None
        region = (outputs.get("wakeGate") or {}).get("region") or outputs["region"]
        ec2 = boto3.client("ec2", region_name=region, endpoint_url=args.endpoint_url)
        wake(outputs, ec2, worker=args.worker, timeout=args.timeout, say=print)
    except WakeError as err:
        print(f"wake: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
