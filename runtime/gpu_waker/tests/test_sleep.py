"""The self-sleep decision against a scripted EC2 (injected clock): only EC2 state ``stopped``
of the worker counts as down; a failed StopInstances is retried at the next check, a sent one
is not sent again; a refused wake (a request answered 503) restarts the period."""

from __future__ import annotations

import aiohttp
import pytest

from gpu_waker.clock import FakeClock
from gpu_waker.cluster import StaticCluster
from gpu_waker.controller import ControllerSettings, PowerController, WakeError
from gpu_waker.ec2 import InstanceState, StartRefused
from tests.conftest import FAST, run
from tests.test_controller import ScriptedEc2

SLEEP = 1800.0
SETTINGS = ControllerSettings(**{**FAST.__dict__, "sleep_after_seconds": SLEEP})


class ControlNode(ScriptedEc2):
    """The sleeper: counts stops; ``failures`` first stops raise (EC2 unreachable, say)."""

    failures = 0

    async def stop(self) -> None:
        self.stops += 1
        if self.failures:
            self.failures -= 1
            raise ConnectionError("EC2 unreachable")


def controller_for(
    worker: ScriptedEc2,
    node: ScriptedEc2,
    session: aiohttp.ClientSession,
    clock: FakeClock,
    settings: ControllerSettings = SETTINGS,
) -> PowerController:
    return PowerController(
        power=worker,
        cluster=StaticCluster(url="http://127.0.0.1:9"),
        session=session,
        settings=settings,
        clock=clock,
        sleeper=node,
    )


@pytest.mark.parametrize(
    "state",
    [
        InstanceState("pending"),
        InstanceState("running"),
        InstanceState("stopping"),
        # A spot instance EC2 stopped: EC2 may start it again by itself, with nobody awake
        # to stop it.
        InstanceState("stopped", "Server.SpotInstanceShutdown"),
        None,  # missing
    ],
)
def test_only_a_stopped_worker_lets_the_node_sleep(state: InstanceState | None) -> None:
    async def scenario() -> None:
        async with aiohttp.ClientSession() as session:
            worker = ScriptedEc2([state or InstanceState("stopped")], missing=state is None)
            node = ControlNode([InstanceState("running")])
            clock = FakeClock()
            controller = controller_for(worker, node, session, clock)
            controller.settings = ControllerSettings(
                **{**SETTINGS.__dict__, "idle_stop_seconds": 10 * SLEEP}
            )
            for _ in range(4):
                await controller.reconcile()
                clock.advance(SLEEP)
            assert node.stops == 0
            # Stopped (by a user) from now on: it sleeps after the full period.
            worker.missing = False
            worker.states = [InstanceState("stopped", "Client.UserInitiatedShutdown")]
            await controller.reconcile()
            clock.advance(SLEEP - 1)
            await controller.reconcile()
            assert node.stops == 0
            clock.advance(1)
            await controller.reconcile()
            assert node.stops == 1

    run(scenario)


def test_a_failed_stop_is_retried_at_the_next_check_and_a_sent_one_is_not_resent() -> None:
    async def scenario() -> None:
        async with aiohttp.ClientSession() as session:
            worker = ScriptedEc2([InstanceState("stopped")])
            node = ControlNode([InstanceState("running")])
            node.failures = 1
            clock = FakeClock()
            controller = controller_for(worker, node, session, clock)
            await controller.reconcile()
            clock.advance(SLEEP)
            await controller.reconcile()
            assert node.stops == 1  # failed
            assert "gpu_waker_sleeps_total 0.0" in controller.metrics.exposition().decode()
            await controller.reconcile()
            assert node.stops == 2  # retried, accepted
            for _ in range(3):
                clock.advance(SLEEP)
                await controller.reconcile()
            assert node.stops == 2
            assert "gpu_waker_sleeps_total 1.0" in controller.metrics.exposition().decode()
            assert worker.stops == 0

    run(scenario)


def test_a_request_answered_503_restarts_the_period() -> None:
    async def scenario() -> None:
        async with aiohttp.ClientSession() as session:
            refusal = StartRefused("InsufficientInstanceCapacity", "none", retryable=True)
            worker = ScriptedEc2([InstanceState("stopped")], refuse=refusal)
            node = ControlNode([InstanceState("running")])
            clock = FakeClock()
            controller = controller_for(worker, node, session, clock)
            await controller.reconcile()
            clock.advance(SLEEP - 60)
            with pytest.raises(WakeError):
                await controller.ensure_ready("POST /api/chat")
            clock.advance(61)
            await controller.reconcile()
            assert node.stops == 0
            clock.advance(SLEEP)
            await controller.reconcile()
            assert node.stops == 1

    run(scenario)


def test_no_sleep_without_power_management() -> None:
    async def scenario() -> None:
        async with aiohttp.ClientSession() as session:
            worker = ScriptedEc2([InstanceState("stopped")])
            node = ControlNode([InstanceState("running")])
            clock = FakeClock()
            off = ControllerSettings(**{**SETTINGS.__dict__, "manage_power": False})
            controller = controller_for(worker, node, session, clock, off)
            for _ in range(3):
                await controller.reconcile()
                clock.advance(SLEEP)
            assert node.stops == 0

    run(scenario)
