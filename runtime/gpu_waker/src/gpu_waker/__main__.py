"""Command line: ``python -m gpu_waker --instance-id i-... --region ... [options]``.

Options also come from the environment (``GPU_WAKER_<OPTION>``, e.g. GPU_WAKER_IDLE_STOP_MINUTES),
which is how the systemd unit passes them (an EnvironmentFile written at install time).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from aiohttp import web

from gpu_waker.cluster import ClusterView, KubeCluster, StaticCluster, parse_selector
from gpu_waker.controller import ControllerSettings, PowerController
from gpu_waker.ec2 import Ec2Power, ec2_client
from gpu_waker.proxy import make_app, upstream_session

log = logging.getLogger("gpu_waker")
ENV_PREFIX = "GPU_WAKER_"


OPTIONS: tuple[tuple[str, str | None, str], ...] = (
    ("instance-id", None, "EC2 instance id of the GPU worker"),
    ("region", None, "AWS region of the worker"),
    ("ec2-endpoint-url", None, "EC2 endpoint (tests only)"),
    ("listen-host", "127.0.0.1", "address the proxy listens on"),
    ("listen-port", "11435", "port the proxy listens on"),
    ("token-file", None, "file holding the client bearer token"),
    ("idle-stop-minutes", "15", "stop the worker after this long unused"),
    ("wake-timeout-seconds", "240", "hold a request at most this long"),
    ("reconcile-seconds", "15", "interval of the idle / Pending-pod checks"),
    ("poll-seconds", "5", "interval of EC2 / Ollama checks while waking"),
    ("upstream-read-timeout-seconds", "900", "read timeout towards Ollama"),
    ("kubeconfig", None, "kubeconfig of the controller's ServiceAccount"),
    ("upstream-namespace", "llm", "namespace of the Ollama pod"),
    ("upstream-selector", "app.kubernetes.io/name=ollama", "labels of the Ollama pod"),
    ("upstream-port", "11434", "Ollama's port"),
    ("upstream-url", None, "fixed Ollama URL instead of a Kubernetes lookup"),
    ("manage-power", "true", "start the worker on demand and stop it when idle (true/false)"),
    ("log-level", "INFO", "logging level"),
)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gpu-waker", description=(__doc__ or "").split("\n\n")[0])
    for name, default, text in OPTIONS:
        env = ENV_PREFIX + name.upper().replace("-", "_")
        p.add_argument(f"--{name}", default=os.environ.get(env, default), help=f"{text} ({env})")
    return p


def settings_from(args: argparse.Namespace) -> ControllerSettings:
    return ControllerSettings(
        idle_stop_seconds=float(args.idle_stop_minutes) * 60,
        wake_timeout_seconds=float(args.wake_timeout_seconds),
        reconcile_seconds=float(args.reconcile_seconds),
        poll_seconds=float(args.poll_seconds),
        manage_power=parse_bool(args.manage_power),
    )


def parse_bool(text: str) -> bool:
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise SystemExit(f"gpu-waker: '{text}' is not true or false")


def cluster_from(args: argparse.Namespace) -> ClusterView:
    if args.upstream_url:
        return StaticCluster(url=args.upstream_url.rstrip("/"))
    if not args.kubeconfig:
        raise SystemExit("gpu-waker: give --kubeconfig (or --upstream-url)")
    return KubeCluster(
        args.kubeconfig,
        upstream_namespace=args.upstream_namespace,
        upstream_selector=parse_selector(args.upstream_selector),
        upstream_port=int(args.upstream_port),
    )


async def serve(args: argparse.Namespace) -> None:
    for required in ("instance_id", "region", "token_file"):
        if not getattr(args, required):
            raise SystemExit(f"gpu-waker: --{required.replace('_', '-')} is required")
    token = Path(args.token_file).read_text().strip()
    session = upstream_session(float(args.upstream_read_timeout_seconds))
    controller = PowerController(
        power=Ec2Power(args.instance_id, ec2_client(args.region, args.ec2_endpoint_url)),
        cluster=cluster_from(args),
        session=session,
        settings=settings_from(args),
    )
    runner = web.AppRunner(make_app(controller, session, token), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, args.listen_host, int(args.listen_port)).start()
    log.info(
        "gpu-waker for %s listening on %s:%s (idle stop %s min, wake timeout %s s)",
        args.instance_id,
        args.listen_host,
        args.listen_port,
        args.idle_stop_minutes,
        args.wake_timeout_seconds,
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
