"""An EC2 instance's state, and Start/StopInstances (boto3, in a thread): the GPU worker's in
worker mode, the AWS control node's (and the worker's) in gate mode.

Errors EC2 returns are mapped to what the controller does about them: retry later
(:class:`StartRefused` with ``retryable``), give up naming the instance
(:class:`InstanceMissing`), or fail loudly (anything else propagates).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Protocol

from boto3.session import Session
from botocore.config import Config
from botocore.exceptions import ClientError

# States of https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_InstanceState.html
PENDING, RUNNING, STOPPING, STOPPED = "pending", "running", "stopping", "stopped"
GONE_STATES = frozenset({"shutting-down", "terminated"})
# The state transition reason of a Spot Instance that EC2 itself stopped on an interruption;
# only EC2 restarts it, when capacity returns
# (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/interruption-behavior.html,
# https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/finding-an-interrupted-Spot-Instance.html).
SPOT_INTERRUPTED_REASON = "Server.SpotInstanceShutdown"
# StartInstances errors that clear up by themselves: no capacity for the type in the zone, a
# spot request not (yet) in a startable state, an instance still between states
# (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/errors-overview.html).
RETRYABLE_START_ERRORS = frozenset(
    {
        "InsufficientInstanceCapacity",
        "InsufficientCapacity",
        "IncorrectSpotRequestState",
        "IncorrectInstanceState",
        "RequestLimitExceeded",
    }
)
MISSING_ERRORS = frozenset({"InvalidInstanceID.NotFound", "InvalidInstanceID.Malformed"})


@dataclass(frozen=True)
class InstanceState:
    name: str
    """pending, running, stopping, stopped, shutting-down or terminated."""
    reason_code: str | None = None
    """StateReason.Code: why it last changed (e.g. Client.UserInitiatedShutdown)."""

    @property
    def interrupted_spot(self) -> bool:
        return self.name == STOPPED and self.reason_code == SPOT_INTERRUPTED_REASON


class InstanceMissing(Exception):
    """The worker instance does not exist (any more) or is being terminated."""


class StartRefused(Exception):
    """EC2 refused StartInstances; ``retryable`` when waiting can fix it."""

    def __init__(self, code: str, message: str, *, retryable: bool) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.retryable = retryable


class PowerApi(Protocol):
    """What the controller needs of EC2 (fakes implement it in unit tests)."""

    instance_id: str

    async def describe(self) -> InstanceState: ...
    async def start(self) -> None: ...
    async def stop(self) -> None: ...


def ec2_client(region: str, endpoint_url: str | None = None, session: Session | None = None) -> Any:
    """An EC2 client with bounded timeouts. Credentials come from ``session``: by default the
    default chain (on the control node, the instance profile through IMDSv2; never static
    keys), or an IAM Roles Anywhere session (:mod:`gpu_waker.credentials`)."""
    config = Config(
        region_name=region,
        connect_timeout=5,
        read_timeout=30,
        # botocore's standard mode retries throttling and 5xx a few times with jitter; longer
        # waits (capacity) are the controller's backoff, not botocore's.
        retries={"mode": "standard", "max_attempts": 3},
    )
    return (session or Session()).client("ec2", endpoint_url=endpoint_url, config=config)


def _code(err: ClientError) -> tuple[str, str]:
    error = err.response.get("Error", {})
    return str(error.get("Code", "Unknown")), str(error.get("Message", ""))


class Ec2Power:
    """StartInstances / StopInstances / DescribeInstances of one instance."""

    def __init__(self, instance_id: str, client: Any, *, label: str = "GPU worker") -> None:
        self.instance_id = instance_id
        self.label = label
        """What the instance is, for messages ("GPU worker", "AWS control node")."""
        self._client = client

    async def describe(self) -> InstanceState:
        try:
            reply = await asyncio.to_thread(
                self._client.describe_instances, InstanceIds=[self.instance_id]
            )
        except ClientError as err:
            code, message = _code(err)
            if code in MISSING_ERRORS:
                raise InstanceMissing(
                    f"{self.label} instance {self.instance_id} does not exist ({code}: {message})"
                ) from err
            raise
        instances = [i for r in reply.get("Reservations", []) for i in r.get("Instances", [])]
        if not instances:
            raise InstanceMissing(f"{self.label} instance {self.instance_id} does not exist")
        instance = instances[0]
        state = InstanceState(
            name=instance["State"]["Name"],
            reason_code=(instance.get("StateReason") or {}).get("Code"),
        )
        if state.name in GONE_STATES:
            raise InstanceMissing(
                f"{self.label} instance {self.instance_id} is {state.name}; re-create it with "
                "`pulumi up -s aws-gpu`"
            )
        return state

    async def start(self) -> None:
        try:
            await asyncio.to_thread(self._client.start_instances, InstanceIds=[self.instance_id])
        except ClientError as err:
            code, message = _code(err)
            if code in MISSING_ERRORS:
                raise InstanceMissing(
                    f"{self.label} instance {self.instance_id} does not exist ({code})"
                ) from err
            raise StartRefused(code, message, retryable=code in RETRYABLE_START_ERRORS) from err

    async def stop(self) -> None:
        await asyncio.to_thread(self._client.stop_instances, InstanceIds=[self.instance_id])
