"""Command line: ``python -m gpu_waker --instance-id i-... --region ... [options]``.

Options also come from the environment (``GPU_WAKER_<OPTION>``, e.g. GPU_WAKER_IDLE_STOP_MINUTES),
which is how the systemd unit passes them (an EnvironmentFile written at install time). An empty
value is the same as not given.

Two modes: ``--mode worker`` (default; on the AWS control node, owns the GPU worker, may put the
control node itself to sleep) and ``--mode gate`` (in the homelab, owns the AWS control node:
starts it, and the GPU worker beside it, on demand; never stops anything).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import re
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiohttp import web
from boto3.session import Session

from gpu_waker.clock import Clock
from gpu_waker.cluster import (
    LIQO_VIRTUAL_NODE_TAINT_KEY,
    ClusterView,
    KubeCluster,
    StaticCluster,
    Taint,
    parse_selector,
)
from gpu_waker.controller import GATE, MODES, WORKER, ControllerSettings, PowerController
from gpu_waker.credentials import CREDENTIALS, DEFAULT, aws_session, roles_anywhere_from
from gpu_waker.ec2 import Ec2Power, ec2_client
from gpu_waker.proxy import make_app, upstream_session

log = logging.getLogger("gpu_waker")
ENV_PREFIX = "GPU_WAKER_"


OPTIONS: tuple[tuple[str, str | None, str], ...] = (
    ("mode", WORKER, f"{' | '.join(MODES)}: own the GPU worker (on the AWS control node) or "
     "the AWS control node (gate, in the homelab)"),
    ("instance-id", None, "EC2 instance id of the GPU worker (gate mode: of the AWS control "
     "node)"),
    ("region", None, "AWS region of the instances"),
    ("ec2-endpoint-url", None, "EC2 endpoint (tests only)"),
    ("listen-host", "127.0.0.1", "address the proxy listens on"),
    ("listen-port", "11435", "port the proxy listens on"),
    ("token-file", None, "file holding the client bearer token"),
    ("idle-stop-minutes", "15", "stop the worker after this long unused"),
    ("wake-timeout-seconds", "240", "hold a request at most this long"),
    ("reconcile-seconds", "15", "interval of the idle / Pending-pod checks"),
    ("poll-seconds", "5", "interval of EC2 / Ollama checks while waking"),
    ("upstream-read-timeout-seconds", "900", "read timeout towards Ollama (gate mode: towards "
     "the AWS-side gpu-waker, which holds a request up to its own wake timeout while the GPU "
     "worker boots: make this longer than that)"),
    ("kubeconfig", None, "kubeconfig of the controller's ServiceAccount"),
    ("upstream-namespace", "llm", "namespace of the Ollama pod"),
    ("upstream-selector", "app.kubernetes.io/name=ollama", "labels of the Ollama pod"),
    ("upstream-port", "11434", "Ollama's port"),
    ("upstream-url", None, "fixed Ollama URL instead of a Kubernetes lookup (gate mode, "
     "required: the AWS-side gpu-waker, e.g. http://10.200.0.1:11435)"),
    ("manage-power", "true", "start the worker on demand and stop it when idle (true/false)"),
    ("sleep-instance-id", None, "worker mode: EC2 instance id of this control node, stopped "
     "when the GPU worker has been stopped and unused for --sleep-after-minutes"),
    ("sleep-after-minutes", None, "worker mode: stop --sleep-instance-id after this long with "
     "the worker stopped, no request, no stream, no GPU pod (empty: never)"),
    ("also-start-instance-ids", None, "gate mode: comma-separated instance ids (the GPU "
     "worker) started right after the control node at each wake; a refusal does not fail it"),
    ("ready-path", "/healthz", "gate mode: path on --upstream-url that answers 200 once the "
     "AWS-side gpu-waker serves"),
    ("offload-toleration-key", LIQO_VIRTUAL_NODE_TAINT_KEY, "gate mode: only Pending GPU pods "
     "tolerating this taint (Liqo's virtual node: they may run on AWS) wake the control node"),
    ("credentials", DEFAULT, f"{' | '.join(CREDENTIALS)}: AWS credentials from boto3's default "
     "chain (instance profile) or from IAM Roles Anywhere with a certificate"),
    ("roles-anywhere-trust-anchor-arn", None, "IAM Roles Anywhere trust anchor"),
    ("roles-anywhere-profile-arn", None, "IAM Roles Anywhere profile"),
    ("roles-anywhere-role-arn", None, "IAM role the session assumes"),
    ("certificate-file", None, "PEM X.509 certificate for IAM Roles Anywhere"),
    ("private-key-file", None, "PEM private key of --certificate-file"),
    ("roles-anywhere-endpoint-url", None, "CreateSession endpoint, https://host[:port] (tests "
     "only)"),
    ("log-level", "INFO", "logging level"),
)  # fmt: skip


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gpu-waker", description=(__doc__ or "").split("\n\n")[0])
    for name, default, text in OPTIONS:
        env = ENV_PREFIX + name.upper().replace("-", "_")
        # An empty variable is "not given" (the EnvironmentFile may write every key).
        p.add_argument(f"--{name}", default=os.environ.get(env) or default, help=f"{text} ({env})")
    return p


def _given(args: argparse.Namespace, option: str) -> str | None:
    value = getattr(args, option.replace("-", "_"))
    return value.strip() if isinstance(value, str) and value.strip() else None


def _positive(args: argparse.Namespace, option: str) -> float:
    text = _given(args, option)
    try:
        value = float(text or "")
    except ValueError:
        value = math.nan
    if not value > 0 or math.isinf(value):
        raise SystemExit(f"gpu-waker: --{option} '{text}' must be a positive number")
    return value


def instance_ids(args: argparse.Namespace, option: str) -> list[str]:
    ids = [i.strip() for i in (_given(args, option) or "").split(",") if i.strip()]
    for instance in ids:
        if not re.fullmatch(r"i-[0-9a-f]{8,17}", instance):
            raise SystemExit(f"gpu-waker: --{option}: '{instance}' is not an EC2 instance id")
    return ids


def check(args: argparse.Namespace) -> None:
    """Refuse missing options and combinations that make no sense (SystemExit naming the
    option), before anything starts."""
    for required in ("instance-id", "region", "token-file"):
        if not _given(args, required):
            raise SystemExit(f"gpu-waker: --{required} is required")
    mode = _given(args, "mode")
    if mode not in MODES:
        raise SystemExit(f"gpu-waker: --mode '{mode}' must be one of {', '.join(MODES)}")
    if mode == GATE:
        _check_gate(args)
    else:
        _check_worker(args)


def _check_gate(args: argparse.Namespace) -> None:
    for option in ("sleep-instance-id", "sleep-after-minutes"):
        if _given(args, option):
            raise SystemExit(
                f"gpu-waker: --{option} is for --mode worker; the gate never stops "
                "anything (the control node sleeps itself)"
            )
    if not _given(args, "upstream-url"):
        raise SystemExit(
            "gpu-waker: --upstream-url (the AWS-side gpu-waker) is required with --mode gate"
        )
    if not (_given(args, "ready-path") or "").startswith("/"):
        raise SystemExit(f"gpu-waker: --ready-path '{args.ready_path}' must start with /")
    if not _given(args, "offload-toleration-key"):
        raise SystemExit("gpu-waker: --offload-toleration-key must not be empty in gate mode")
    own = _given(args, "instance-id")
    if own in instance_ids(args, "also-start-instance-ids"):
        raise SystemExit(f"gpu-waker: --also-start-instance-ids names --instance-id {own} itself")


def _check_worker(args: argparse.Namespace) -> None:
    if _given(args, "also-start-instance-ids"):
        raise SystemExit("gpu-waker: --also-start-instance-ids is for --mode gate")
    if _given(args, "sleep-after-minutes"):
        _positive(args, "sleep-after-minutes")
        if not _given(args, "sleep-instance-id"):
            raise SystemExit(
                "gpu-waker: --sleep-after-minutes needs --sleep-instance-id (this control "
                "node's instance id)"
            )
    sleeper = instance_ids(args, "sleep-instance-id")
    if len(sleeper) > 1:
        raise SystemExit("gpu-waker: --sleep-instance-id takes one instance id")
    own = _given(args, "instance-id")
    if sleeper == [own]:
        raise SystemExit(
            f"gpu-waker: --sleep-instance-id {own} is the GPU worker (--instance-id); it must "
            "be the control node's own id"
        )


def settings_from(args: argparse.Namespace) -> ControllerSettings:
    gate = args.mode == GATE
    sleep = _given(args, "sleep-after-minutes")
    return ControllerSettings(
        idle_stop_seconds=float(args.idle_stop_minutes) * 60,
        wake_timeout_seconds=float(args.wake_timeout_seconds),
        reconcile_seconds=float(args.reconcile_seconds),
        poll_seconds=float(args.poll_seconds),
        manage_power=parse_bool(args.manage_power),
        mode=args.mode,
        ready_path=args.ready_path if gate else ControllerSettings.ready_path,
        sleep_after_seconds=(
            float(sleep) * 60 if sleep and not gate and _given(args, "sleep-instance-id") else None
        ),
    )


def parse_bool(text: str) -> bool:
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise SystemExit(f"gpu-waker: '{text}' is not true or false")


def cluster_from(args: argparse.Namespace) -> ClusterView:
    upstream = _given(args, "upstream-url")
    fixed = upstream.rstrip("/") if upstream else None
    if args.mode == GATE:
        # The homelab cluster: only its Pending GPU pods that may be offloaded to AWS count.
        assert fixed is not None
        if not _given(args, "kubeconfig"):
            return StaticCluster(url=fixed)
        return KubeCluster(
            args.kubeconfig,
            upstream_namespace=args.upstream_namespace,
            upstream_selector=parse_selector(args.upstream_selector),
            upstream_port=int(args.upstream_port),
            required_toleration=Taint(key=args.offload_toleration_key.strip()),
            fixed_upstream=fixed,
        )
    if fixed:
        return StaticCluster(url=fixed)
    if not _given(args, "kubeconfig"):
        raise SystemExit("gpu-waker: give --kubeconfig (or --upstream-url)")
    return KubeCluster(
        args.kubeconfig,
        upstream_namespace=args.upstream_namespace,
        upstream_selector=parse_selector(args.upstream_selector),
        upstream_port=int(args.upstream_port),
    )


@dataclass
class Service:
    controller: PowerController
    app: web.Application
    session: aiohttp.ClientSession
    """Towards the upstream; closed by the caller."""


def build(
    args: argparse.Namespace,
    *,
    clock: Clock | None = None,
    aws: Session | None = None,
) -> Service:
    """The controller and the proxy app from checked options (call inside an event loop).
    ``aws``: the boto3 Session of the EC2 calls (default: from ``--credentials``)."""
    check(args)
    if aws is None:
        aws = aws_session(roles_anywhere_from(args))
    else:
        roles_anywhere_from(args)  # still checked
    ec2 = ec2_client(args.region, _given(args, "ec2-endpoint-url"), aws)
    settings = settings_from(args)
    gate = settings.mode == GATE
    sleeper_id = _given(args, "sleep-instance-id")
    token = Path(args.token_file).read_text().strip()
    session = upstream_session(float(args.upstream_read_timeout_seconds))
    controller = PowerController(
        power=Ec2Power(args.instance_id, ec2, label=settings.subject),
        cluster=cluster_from(args),
        session=session,
        settings=settings,
        clock=clock,
        also_start=[
            Ec2Power(i, ec2, label="GPU worker")
            for i in instance_ids(args, "also-start-instance-ids")
        ],
        sleeper=(
            Ec2Power(sleeper_id, ec2, label="control node")
            if sleeper_id and settings.sleep_after_seconds is not None
            else None
        ),
    )
    app = make_app(controller, session, token, forward_authorization=gate)
    return Service(controller, app, session)


def describe(args: argparse.Namespace, settings: ControllerSettings) -> str:
    if settings.mode == GATE:
        also = _given(args, "also-start-instance-ids") or "nothing"
        return (
            f"gate for AWS control node {args.instance_id} (also starts {also}; upstream "
            f"{args.upstream_url}{settings.ready_path}; never stops anything; wake timeout "
            f"{args.wake_timeout_seconds} s, upstream read timeout "
            f"{args.upstream_read_timeout_seconds} s)"
        )
    sleep = (
        f"sleeps control node {args.sleep_instance_id} after "
        f"{settings.sleep_after_seconds / 60:g} min with the worker stopped"
        if settings.sleep_after_seconds is not None
        else "no self-sleep"
    )
    return (
        f"gpu-waker for GPU worker {args.instance_id} (idle stop {args.idle_stop_minutes} min, "
        f"wake timeout {args.wake_timeout_seconds} s, {sleep})"
    )


async def serve(args: argparse.Namespace) -> None:
    service = build(args)
    controller, session = service.controller, service.session
    runner = web.AppRunner(service.app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, args.listen_host, int(args.listen_port)).start()
    log.info(
        "%s listening on %s:%s (credentials: %s)",
        describe(args, controller.settings),
        args.listen_host,
        args.listen_port,
        args.credentials,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await controller.run(stop)
    finally:
        await runner.cleanup()
        await session.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level,
        stream=sys.stdout,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
