"""Running the checks with a time bound each, the table, and the command line."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tools.stack_outputs import StackOutputsError, read_stack_outputs
from tools.verify.api import Kube, VerifyError
from tools.verify.checks import (
    check_api,
    check_cuda_jobs,
    check_device_plugin,
    check_gpu_operator,
    check_gpus,
    check_jupyterhub,
    check_nodes,
    check_ollama,
    check_prometheus,
    check_virtual_node,
)
from tools.verify.site import (
    DEFAULT_TIMEOUT_SECONDS,
    FAIL,
    PASS,
    SKIP,
    STACKS,
    Check,
    Result,
    Site,
    label_of,
    named,
)
from tools.verify.storage import make_storage_check


def checks_for(site: Site) -> list[Check]:
    common: list[Check] = [check_nodes, check_gpus]
    classes = site.kube.get("/apis/storage.k8s.io/v1/storageclasses")["items"]
    storage = [make_storage_check(c) for c in classes]
    if site.name == "homelab":
        return [
            *common,
            *storage,
            check_gpu_operator,
            check_cuda_jobs,
            check_jupyterhub,
            check_virtual_node,
            check_ollama,
            check_prometheus,
        ]
    return [*common, *storage, check_device_plugin, check_ollama]


def run_bounded(check: Check, site: Site) -> Result:
    """The check's result, or FAIL once ``site.timeout`` has passed (the thread is left to end
    on its socket timeout; it is a daemon, so it never holds the process)."""
    box: list[Result] = []
    name = label_of(check)

    def target() -> None:
        try:
            box.append(check(site))
        except VerifyError as err:
            box.append(Result(site.name, name, FAIL, str(err)))
        except Exception as err:  # a broken reply is a failed check, not a crash
            box.append(Result(site.name, name, FAIL, f"{type(err).__name__}: {err}"))

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(site.timeout)
    if not box:
        return Result(site.name, name, FAIL, f"no answer within {site.timeout:.0f} s")
    return box[0]


def verify_site(site: Site, progress: Callable[[str], None]) -> list[Result]:
    progress(f"[{site.name}] api-reachable ... (each check at most {site.timeout:.0f} s)")
    first = run_bounded(check_api, site)
    progress(f"[{site.name}] api-reachable {first.status}")
    if first.status != PASS:
        first = Result(
            site.name,
            "api-reachable",
            FAIL,
            f"cannot reach the Kubernetes API at {site.kube.server}: {first.reason}",
            site.kubectl("cluster-info"),
        )
        return [first]
    results = [first]
    found: list[list[Check]] = []

    @named("storage-classes")
    def list_checks(s: Site) -> Result:
        found.append(checks_for(s))
        return Result(s.name, "storage-classes", PASS, "listed")

    listed = run_bounded(list_checks, site)
    if not found:
        return [*results, listed]
    for check in found[0]:
        progress(f"[{site.name}] {label_of(check)} ...")
        result = run_bounded(check, site)
        progress(f"[{site.name}] {result.check} {result.status}")
        results.append(result)
    return results


def render_table(results: list[Result]) -> str:
    header = ("SITE", "CHECK", "STATUS", "REASON", "INVESTIGATE")
    rows = [header] + [(r.site, r.check, r.status, r.reason, r.investigate) for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = []
    for row in rows:
        cells = [row[i].ljust(widths[i]) for i in range(4)] + [row[4]]
        lines.append("  ".join(cells).rstrip())
    failed = sum(r.status == FAIL for r in results)
    skipped = sum(r.status == SKIP for r in results)
    passed = len(results) - failed - skipped
    lines.append(f"\n{passed} passed, {failed} failed, {skipped} skipped")
    return "\n".join(lines)


def _kubeconfig_file(text: str, stack: str) -> str:
    """The kubeconfig written (mode 0600) where the investigate commands can use it."""
    folder = Path(tempfile.gettempdir()) / "hybridgpu-verify"
    folder.mkdir(mode=0o700, exist_ok=True)
    path = folder / f"{stack}.kubeconfig"
    path.touch(mode=0o600)
    path.write_text(text)
    return str(path)


def build_sites(which: list[str], outputs: dict[str, dict[str, Any]], timeout: float) -> list[Site]:
    aws = outputs.get("aws-gpu", {})
    waker = (aws["gpuWakerUrl"], aws.get("gpuWakerToken", "")) if aws.get("gpuWakerUrl") else None
    sites = []
    for stack in which:
        out = outputs[stack]
        # The homelab's clients call the wake gate when the AWS side sleeps: check that path.
        gate = out.get("wakeGateUrl") if stack == "homelab" else None
        site_waker = (gate, waker[1]) if gate and waker is not None else waker
        text = out["kubeconfig"] if stack == "homelab" else out["adminKubeconfig"]
        path = _kubeconfig_file(text, stack)
        kube = Kube.from_kubeconfig(text, timeout=max(timeout / 3, 1.0), path=path)
        sites.append(Site(stack, kube, out, waker=site_waker, timeout=timeout))
    return sites


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="./dev verify", description="Check the live clusters against the stack outputs."
    )
    parser.add_argument("target", choices=[*STACKS, "all"])
    parser.add_argument(
        "--outputs",
        action="append",
        default=[],
        metavar="STACK=FILE",
        help="a stack's outputs as `pulumi stack output --json --show-secrets` wrote them "
        "(default: ask the pulumi CLI)",
    )
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_SECONDS)
    args = parser.parse_args(argv)
    which: list[str] = list(STACKS) if args.target == "all" else [args.target]
    files = dict(item.split("=", 1) for item in args.outputs)
    outputs: dict[str, dict[str, Any]] = {}
    try:
        # gpu-waker's address and token are aws-gpu outputs; homelab's checks use them too.
        for stack in dict.fromkeys([*which, "aws-gpu"]):
            if stack in files:
                outputs[stack] = json.loads(Path(files[stack]).read_text())
            elif stack in which:
                outputs[stack] = read_stack_outputs(
                    stack, show_secrets=True, instead=f"pass --outputs {stack}=FILE"
                )
            else:
                try:
                    outputs[stack] = read_stack_outputs(stack, show_secrets=True, instead="")
                except StackOutputsError:
                    outputs[stack] = {}
        sites = build_sites(which, outputs, args.timeout)
    except (StackOutputsError, VerifyError, KeyError, OSError, ValueError) as err:
        print(f"verify: {err}", file=sys.stderr)
        return 2
    results: list[Result] = []
    for site in sites:
        results += verify_site(site, lambda line: print(line, file=sys.stderr, flush=True))
    print(render_table(results))
    return 1 if any(r.status == FAIL for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
