"""The power-state controller: wake an instance on demand, stop it when idle.

Two modes (:attr:`ControllerSettings.mode`):

- ``worker`` (on the AWS control node): owns the GPU worker; wakes it for requests and Pending
  GPU pods, stops it when idle; optionally stops the control node itself (``sleep``) once the
  worker has been stopped and nothing used it for ``sleep_after_seconds``.
- ``gate`` (in the homelab): owns the AWS control node; wakes it (and starts the GPU worker
  beside it, so both boot in parallel) for requests and for Pending GPU pods that may run on
  Liqo's virtual node. It never stops anything: the control node sleeps itself.

One wake at a time: every caller of :meth:`PowerController.ensure_ready` joins the same task, so
fifty cold requests cause one StartInstances. The truth about the instance is EC2's state, read
before every start, so a restarted controller never starts an instance that is already pending
or running, and a stop in progress is waited out before starting again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp

from gpu_waker.clock import Clock, MonotonicClock
from gpu_waker.cluster import ClusterView, GpuPods
from gpu_waker.ec2 import (
    PENDING,
    RUNNING,
    STOPPED,
    STOPPING,
    InstanceMissing,
    InstanceState,
    PowerApi,
    StartRefused,
)
from gpu_waker.metrics import Metrics

log = logging.getLogger("gpu_waker")
DOWN_STATES = frozenset({"stopping", "stopped", "unavailable", "missing"})
WORKER, GATE = "worker", "gate"
MODES = (WORKER, GATE)


@dataclass(frozen=True)
class ControllerSettings:
    idle_stop_seconds: float = 15 * 60
    wake_timeout_seconds: float = 240
    """How long a request is held while the worker comes up (the client then gets 504)."""
    poll_seconds: float = 5.0
    """Interval of EC2/upstream checks while waking."""
    reconcile_seconds: float = 15.0
    """Interval of the idle / Pending-pod loop."""
    probe_timeout_seconds: float = 2.0
    ready_ttl_seconds: float = 5.0
    """A successful probe is trusted this long (keeps the warm path free of extra calls)."""
    backoff_base_seconds: float = 15.0
    backoff_max_seconds: float = 300.0
    give_up_seconds: float = 1800.0
    """A wake nobody could complete in this time ends (the next request starts a new one)."""
    manage_power: bool = True
    """False: proxy only; never start or stop the worker (someone else does)."""
    mode: str = WORKER
    """``worker``: owns the GPU worker. ``gate``: owns the AWS control node, never stops it."""
    ready_path: str = "/api/version"
    """What answers 200 once the upstream serves: Ollama's version (worker mode), the AWS-side
    gpu-waker's ``/healthz`` (gate mode)."""
    sleep_after_seconds: float | None = None
    """Worker mode: stop the control node itself (the controller's ``sleeper``) once the worker
    has been ``stopped`` and unused this long; None: never."""

    @property
    def subject(self) -> str:
        """What the controlled instance is, in messages."""
        return "AWS control node" if self.mode == GATE else "GPU worker"


class WakeError(Exception):
    """Why a held request cannot be served: HTTP status, reason, Retry-After seconds."""

    def __init__(self, status: int, reason: str, retry_after: int | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.retry_after = retry_after


class PowerController:
    def __init__(
        self,
        *,
        power: PowerApi,
        cluster: ClusterView,
        session: aiohttp.ClientSession,
        settings: ControllerSettings,
        metrics: Metrics | None = None,
        clock: Clock | None = None,
        also_start: Sequence[PowerApi] = (),
        sleeper: PowerApi | None = None,
    ) -> None:
        self.power = power
        self.also_start = tuple(also_start)
        """Gate mode: instances started right after ``power`` at each wake (the GPU worker)."""
        self.sleeper = sleeper
        """Worker mode: the instance this controller runs on, stopped when everything sleeps."""
        self.cluster = cluster
        self.session = session
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.clock = clock or MonotonicClock()
        self.state = "unknown"
        # A (re)started controller gives the worker a full idle period before stopping it.
        self.last_activity = self.clock.now()
        self.last_demand = self.last_activity
        """Last request that needed the upstream, served or not (a 503 is a request too): the
        sleep timer counts from it; the idle stop counts from ``last_activity``."""
        self.in_flight = 0
        self._upstream: str | None = None
        self._ready_at: float | None = None
        self._wake_task: asyncio.Task[str] | None = None
        self._retry_at: float | None = None
        self._failures = 0
        self._refusal = ""
        self._woken_for: set[str] = set()
        self._models_note = ""
        self._stopped_since: float | None = None
        """Since when EC2 has reported the worker ``stopped`` without a break (sleep timer)."""
        self._sleep_sent_at: float | None = None
        """When StopInstances of the sleeper was accepted (not re-sent while nothing changed)."""
        self._sleep_blocked_at = self.last_activity
        """Last check that found a stream, a GPU pod, or could not list the pods."""

    # ---------------------------------------------------------------- bookkeeping
    def _set_state(self, state: str, reason: str) -> None:
        if state != self.state:
            log.info(
                "%s %s: %s -> %s (%s)",
                self.settings.subject,
                self.power.instance_id,
                self.state,
                state,
                reason,
            )
            self.state = state
            self.metrics.set_state(state)

    def request_started(self, *, activity: bool) -> None:
        self.in_flight += 1
        self.metrics.in_flight.set(self.in_flight)
        if activity:
            self.last_activity = self.clock.now()

    def request_finished(self, *, activity: bool) -> None:
        self.in_flight -= 1
        self.metrics.in_flight.set(self.in_flight)
        if activity:
            self.last_activity = self.clock.now()

    def upstream_failed(self) -> None:
        """A forward could not connect: the next request re-checks instead of trusting."""
        self._ready_at = None

    @property
    def waking(self) -> bool:
        return self._wake_task is not None and not self._wake_task.done()

    # ---------------------------------------------------------------- upstream
    async def _probe(self, url: str) -> bool:
        timeout = aiohttp.ClientTimeout(total=self.settings.probe_timeout_seconds)
        try:
            async with self.session.get(
                f"{url}{self.settings.ready_path}", timeout=timeout
            ) as reply:
                return reply.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def _locate(self) -> str | None:
        try:
            url = await self.cluster.upstream_url()
        except Exception as err:
            self.metrics.cluster_errors.inc()
            log.warning("cannot read the upstream from the cluster: %s", err)
            return None
        if url and await self._probe(url):
            return url
        return None

    def _mark_ready(self, url: str, reason: str) -> None:
        self._upstream = url
        self._ready_at = self.clock.now()
        self._failures = 0
        self._retry_at = None
        self._set_state("ready", reason)

    async def ready_url(self) -> str | None:
        """The upstream if it answers now (a recent probe counts), without waking anything.
        After EC2 said stopping/stopped, only a wake (which reads EC2 again) makes it ready:
        a shutting-down Ollama may still answer a probe."""
        if self.state in DOWN_STATES:
            return None
        if (
            self._upstream
            and self._ready_at is not None
            and self.clock.now() - self._ready_at < self.settings.ready_ttl_seconds
        ):
            return self._upstream
        url = await self._locate()
        if url:
            self._mark_ready(url, "Ollama answers")
            return url
        self._ready_at = None
        return None

    async def loaded_models(self) -> list[str]:
        """Names of models Ollama holds in memory (``/api/ps``); none if it does not answer."""
        url = self._upstream or await self.cluster.upstream_url()
        if not url:
            return []
        timeout = aiohttp.ClientTimeout(total=self.settings.probe_timeout_seconds)
        try:
            async with self.session.get(f"{url}/api/ps", timeout=timeout) as reply:
                if reply.status != 200:
                    return []
                body = await reply.json()
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return []
        return [str(m.get("name", "?")) for m in body.get("models") or []]

    # ---------------------------------------------------------------- waking
    def _backoff(self, reason: str) -> int:
        self._failures += 1
        delay = min(
            self.settings.backoff_base_seconds * 2 ** (self._failures - 1),
            self.settings.backoff_max_seconds,
        )
        self._retry_at = self.clock.now() + delay
        self._refusal = reason
        return math.ceil(delay)

    def _check_backoff(self) -> None:
        if self._retry_at is None:
            return
        remaining = self._retry_at - self.clock.now()
        if remaining > 0:
            raise WakeError(
                503,
                f"{self._refusal}; next start attempt in {math.ceil(remaining)} s",
                retry_after=math.ceil(remaining),
            )

    def wake(self, trigger: str) -> asyncio.Task[str]:
        """The running wake, or a new one (raises WakeError while backing off)."""
        if not self.settings.manage_power:
            raise WakeError(
                503,
                f"{self.settings.subject} {self.power.instance_id} is not serving and "
                "gpu-waker's power management is off (gpuWaker.enabled: false); start it by hand",
                retry_after=60,
            )
        if self._wake_task is None or self._wake_task.done():
            self._check_backoff()
            self._wake_task = asyncio.ensure_future(self._wake(trigger))
            self._wake_task.add_done_callback(_retrieve)
        return self._wake_task

    async def ensure_ready(self, trigger: str) -> str:
        """Upstream URL once Ollama answers; starts the worker if needed. Raises WakeError."""
        self.last_demand = self.clock.now()
        url = await self.ready_url()
        if url:
            return url
        task = self.wake(trigger)
        self.metrics.held.inc()
        try:
            return await asyncio.wait_for(
                asyncio.shield(task), timeout=self.settings.wake_timeout_seconds
            )
        except TimeoutError:
            raise WakeError(
                504,
                f"{self.settings.subject} {self.power.instance_id} is not ready after "
                f"{self.settings.wake_timeout_seconds:.0f} s (state: {self.state}); it keeps "
                "starting, retry in a minute",
                retry_after=60,
            ) from None
        finally:
            self.metrics.held.dec()

    async def _wake(self, trigger: str) -> str:
        loop = asyncio.get_running_loop()
        began = loop.time()
        instance = self.power.instance_id
        subject = self.settings.subject
        start_issued = False
        while True:
            if loop.time() - began > self.settings.give_up_seconds:
                raise WakeError(504, f"{subject} {instance} did not come up; see the logs", 60)
            try:
                state = await self.power.describe()
            except InstanceMissing as err:
                self._set_state("missing", str(err))
                raise WakeError(502, str(err)) from None
            if state.name == STOPPING:
                self._set_state("stopping", "a stop is in progress; starting once it is done")
            elif state.name == STOPPED and state.interrupted_spot:
                reason = (
                    f"EC2 interrupted spot instance {instance} (Server.SpotInstanceShutdown); "
                    "only EC2 restarts it, when capacity returns"
                )
                self._set_state("unavailable", reason)
                raise WakeError(503, reason, retry_after=self._backoff(reason))
            elif state.name == STOPPED and not start_issued:
                try:
                    await self.power.start()
                except StartRefused as err:
                    self.metrics.start_refusals.labels(err.code).inc()
                    reason = f"EC2 refused to start {subject} {instance}: {err}"
                    self._set_state("unavailable", reason)
                    if not err.retryable:
                        raise WakeError(502, reason) from None
                    raise WakeError(503, reason, retry_after=self._backoff(reason)) from None
                start_issued = True
                self.metrics.wakes.labels(trigger.split(" ", 1)[0]).inc()
                self._set_state("starting", f"StartInstances, trigger: {trigger}")
                await self._start_also(trigger)
            elif state.name == PENDING:
                self._set_state("starting", "instance pending")
            elif state.name == RUNNING:
                self._set_state("booting", f"instance running, waiting for {self._upstream_name}")
                url = await self._locate()
                if url:
                    self.metrics.wake_duration.observe(loop.time() - began)
                    self._mark_ready(
                        url, f"{self._upstream_name} answers after {loop.time() - began:.0f} s"
                    )
                    return url
            await asyncio.sleep(self.settings.poll_seconds)

    @property
    def _upstream_name(self) -> str:
        return "the AWS-side gpu-waker" if self.settings.mode == GATE else "Ollama"

    async def _start_also(self, trigger: str) -> None:
        """Gate mode: start the other instances (the GPU worker) right after the control node,
        once per wake, so both boot in parallel. A refusal does not fail the wake: the AWS-side
        gpu-waker starts the worker itself (with its own backoff) when the request reaches it."""
        for other in self.also_start:
            try:
                await other.start()
            except (StartRefused, InstanceMissing) as err:
                log.warning(
                    "could not start %s beside %s %s (trigger: %s): %s; the AWS-side gpu-waker "
                    "starts it when the request reaches it",
                    other.instance_id,
                    self.settings.subject,
                    self.power.instance_id,
                    trigger,
                    err,
                )
            except Exception as err:  # EC2 unreachable, throttled past botocore's retries, ...
                log.warning(
                    "could not start %s beside %s %s (trigger: %s): %s: %s",
                    other.instance_id,
                    self.settings.subject,
                    self.power.instance_id,
                    trigger,
                    type(err).__name__,
                    err,
                )
            else:
                log.info(
                    "StartInstances %s beside %s %s (trigger: %s)",
                    other.instance_id,
                    self.settings.subject,
                    self.power.instance_id,
                    trigger,
                )

    # ---------------------------------------------------------------- reconcile
    async def _gpu_pods(self) -> GpuPods | None:
        try:
            return await self.cluster.gpu_pods()
        except Exception as err:
            self.metrics.cluster_errors.inc()
            log.warning("cannot list GPU pods (not stopping while unknown): %s", err)
            return None

    async def reconcile(self) -> None:
        """One pass: follow EC2's state, wake for new Pending GPU pods, stop when idle."""
        try:
            state = await self.power.describe()
        except InstanceMissing as err:
            self._set_state("missing", str(err))
            self._stopped_since = None  # missing is not "stopped": no sleep
            return
        if not self.waking:
            if state.name in (STOPPED, STOPPING):
                self._ready_at = None
                self._set_state(state.name, f"EC2 reports {state.name} ({state.reason_code})")
            elif state.name == PENDING:
                self._set_state("starting", "EC2 reports pending (started outside the proxy)")
        pods = await self._gpu_pods()
        if pods is not None:
            present = {p.uid for p in pods.pods}
            self._woken_for &= present
            if pods.pods:
                self.last_activity = self.clock.now()  # a GPU pod is use: idle counts after it
            fresh = [p for p in pods.pending if p.uid not in self._woken_for]
            if fresh and state.name != RUNNING and not self.waking and self.settings.manage_power:
                self._woken_for.update(p.uid for p in fresh)
                try:
                    self.wake(f"pending-pod {fresh[0].name}")
                except WakeError as err:
                    log.warning("not waking for %s: %s", fresh[0].name, err.reason)
        if self.settings.mode == GATE:
            return  # the gate never stops anything: the control node sleeps itself
        if (
            self.settings.manage_power
            and state.name == RUNNING
            and not self.waking
            and pods is not None
        ):
            await self._maybe_stop(pods)
        await self._maybe_sleep(state, pods)

    async def _maybe_sleep(self, state: InstanceState, pods: GpuPods | None) -> None:
        """Stop the control node itself once the worker has been ``stopped`` (not stopping, not
        missing, not a spot instance EC2 may restart by itself) and nothing used it (no request,
        no stream, no Pending or Running GPU pod) for ``sleep_after_seconds``. StopInstances is
        sent once; a failure is retried at the next reconcile."""
        after = self.settings.sleep_after_seconds
        if self.sleeper is None or after is None or not self.settings.manage_power:
            return
        now = self.clock.now()
        if state.name != STOPPED or state.interrupted_spot or self.waking:
            self._stopped_since = None
            self._sleep_sent_at = None
            return
        if self._stopped_since is None:
            self._stopped_since = now
        # GPU pods unknown (the API did not answer) is not quiet either: the period restarts.
        if pods is None or pods.pods or self.in_flight:
            self._sleep_blocked_at = now
            self._sleep_sent_at = None
            return
        quiet_since = max(
            self._stopped_since, self.last_activity, self.last_demand, self._sleep_blocked_at
        )
        if self._sleep_sent_at is not None and quiet_since > self._sleep_sent_at:
            self._sleep_sent_at = None  # used since the stop was sent: a new quiet period
        if now - quiet_since < after or self._sleep_sent_at is not None:
            return
        reason = (
            f"GPU worker {self.power.instance_id} stopped and unused for "
            f"{(now - quiet_since) / 60:.1f} min: no request, no stream, no GPU pod"
        )
        try:
            await self.sleeper.stop()
        except Exception as err:
            log.warning(
                "could not stop the control node %s (retrying at the next check): %s: %s",
                self.sleeper.instance_id,
                type(err).__name__,
                err,
            )
            return
        self._sleep_sent_at = now
        self.metrics.sleeps.inc()
        log.info("control node %s: running -> sleeping (%s)", self.sleeper.instance_id, reason)

    async def _maybe_stop(self, pods: GpuPods) -> None:
        idle_for = self.clock.now() - self.last_activity
        if self.in_flight or pods.pods or idle_for < self.settings.idle_stop_seconds:
            return
        models = await self.loaded_models()
        if models:
            note = ", ".join(models)
            if note != self._models_note:
                log.info("idle, but Ollama holds %s in memory: not stopping yet", note)
                self._models_note = note
            return
        self._models_note = ""
        if self.in_flight or self.waking:  # a request arrived while /api/ps was read
            return
        self._ready_at = None
        self._set_state(
            "stopping",
            f"idle {idle_for / 60:.1f} min: no request, no stream, no model loaded, no GPU pod",
        )
        await self.power.stop()
        self.metrics.stops.labels("idle").inc()

    async def run(self, stop: asyncio.Event) -> None:
        """The reconcile loop until ``stop`` is set."""
        while not stop.is_set():
            try:
                await self.reconcile()
            except Exception:
                log.exception("reconcile failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.settings.reconcile_seconds)


def _retrieve(task: asyncio.Task[str]) -> None:
    """Mark a finished wake's exception as seen (waiters got it; nobody may have waited)."""
    if not task.cancelled() and task.exception() is not None:
        log.debug("wake ended: %s", task.exception())
