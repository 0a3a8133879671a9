"""Offline plan of a stack: run the real program under mocks, print the resource tree, write every
rendered artifact for review, optionally emit JSON for diffing two plans in a pull request.

No cloud credentials, Proxmox access or Pulumi CLI are needed. Provider-computed values (ids, IPs,
command output) are fakes from tools/offline.py; everything the program renders itself (cloud-init,
Nebula configs and certificates, k3s config, scripts, manifests, Helm values) is real.

    python -m tools.plan aws-gpu
    python -m tools.plan homelab --artifacts build/plan/homelab --json build/plan/homelab.json

For homelab the aws-gpu stack is evaluated first so the StackReference reads its real exports.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import re
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import yaml

from stacks.config import STACK_AWS_GPU, ConfigError
from tools import cost, mocks, offline

# Inputs that hold a rendered document, by resource type: (input path, file suffix).
ARTIFACT_INPUTS: dict[str, tuple[tuple[str, str], ...]] = {
    "aws:ec2/instance:Instance": (
        ("userData", "cloud-init.yaml"),
        ("userDataBase64", "cloud-init.yaml"),
    ),
    "command:remote:Command": (
        ("create", "create.sh"),
        ("update", "update.sh"),
        ("delete", "delete.sh"),
    ),
    "command:local:Command": (
        ("create", "create.sh"),
        ("update", "update.sh"),
        ("delete", "delete.sh"),
    ),
    "proxmoxve:index/fileLegacy:FileLegacy": (("sourceRaw.data", "snippet.yaml"),),
    "kubernetes:helm.sh/v3:Release": (("values", "values.yaml"),),
}
K8S_OBJECT_KEYS = (
    "apiVersion",
    "kind",
    "metadata",
    "spec",
    "data",
    "stringData",
    "rules",
    "subjects",
    "roleRef",
)
DOCUMENT_START = re.compile(r"^(#cloud-config|#!|apiVersion:|---)")


def _get_path(data: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(data, dict) or part not in data:
            return None
        data = data[part]
    return data


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def _as_text(value: Any, suffix: str) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        if suffix == "cloud-init.yaml" and not value.startswith(("#", "Content-Type")):
            try:  # userDataBase64
                return base64.b64decode(value, validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                return value
        return value
    return yaml.safe_dump(value, sort_keys=True)


def artifacts(run: offline.StackRun) -> Iterator[tuple[str, str, bool]]:
    """(relative file name, text, contains a secret) of every rendered document in the run."""
    for reg in run.managed():
        inputs = reg.plain_inputs
        secrets = set(reg.secret_inputs)
        base = f"{_safe_name(reg.name)}"
        typed = ARTIFACT_INPUTS.get(reg.type)
        if typed:
            for path, suffix in typed:
                text = _as_text(_get_path(inputs, path), suffix)
                if text is not None:
                    secret = any(s == path or s.startswith(path) for s in secrets)
                    yield f"{base}.{suffix}", text, secret
            continue
        if reg.type.startswith("kubernetes:") and reg.custom and "kind" in inputs:
            manifest = {k: inputs[k] for k in K8S_OBJECT_KEYS if k in inputs}
            yield (
                f"{base}.{inputs['kind'].lower()}.yaml",
                yaml.safe_dump(manifest, sort_keys=False),
                bool(secrets),
            )
            continue
        # Any other multi-line document a component renders (grows with new components).
        for input_name, value in sorted(inputs.items()):
            if isinstance(value, str) and "\n" in value and DOCUMENT_START.match(value):
                secret = any(s == input_name or s.startswith(input_name) for s in secrets)
                yield f"{base}.{_safe_name(input_name)}.txt", value, secret


COMPONENT_DOCUMENT_SUFFIX = {"configYaml": "config.yml", "certPem": "crt", "keyPem": "key"}


def component_artifacts(run: offline.StackRun) -> Iterator[tuple[str, str, bool]]:
    """Documents components expose as outputs (e.g. each node's Nebula config and certificate)."""
    by_urn = run.by_urn()
    for urn, outputs in sorted(run.component_outputs.items()):
        reg = by_urn.get(urn)
        if reg is None:
            continue
        secrets = set(mocks.secret_paths(outputs))
        for name, value in sorted(mocks.unwrap(outputs).items()):
            if isinstance(value, str) and "\n" in value:
                suffix = COMPONENT_DOCUMENT_SUFFIX.get(name, f"{_safe_name(name)}.txt")
                yield f"{_safe_name(reg.name)}.{suffix}", value, name in secrets


def resource_tree(run: offline.StackRun) -> list[str]:
    """Indented tree lines (type, name) following parents; siblings sorted by name, because
    registration order varies between runs of an asynchronous program."""
    children: dict[str, list[mocks.Registration]] = {}
    urns = {r.urn for r in run.registrations}
    for reg in run.registrations:
        parent = reg.parent if reg.parent in urns else ""
        children.setdefault(parent, []).append(reg)

    lines = [f"pulumi:pulumi:Stack  {offline.PROJECT}-{run.stack}"]

    def walk(parent: str, prefix: str) -> None:
        kids = sorted(children.get(parent, []), key=lambda r: (r.name, r.type))
        for i, reg in enumerate(kids):
            last = i == len(kids) - 1
            marker = "read " if reg.read else ""
            lines.append(f"{prefix}{'└─ ' if last else '├─ '}{marker}{reg.type}  {reg.name}")
            walk(reg.urn, prefix + ("   " if last else "│  "))

    walk("", "")
    return lines


def plan_json(run: offline.StackRun) -> dict[str, Any]:
    """Deterministic JSON of the plan (secrets redacted), for `diff` between two branches."""
    resources = [
        {
            "urn": r.urn,
            "type": r.type,
            "name": r.name,
            "parent": r.parent,
            "read": r.read,
            "inputs": mocks.redact(r.inputs),
            "secretInputs": sorted(r.secret_inputs),
            "dependencies": sorted(r.dependencies),
            "provider": r.provider.split("::")[-1] if r.provider else "",
            "deleteBeforeReplace": r.delete_before_replace,
            "additionalSecretOutputs": sorted(r.additional_secret_outputs),
        }
        for r in sorted(run.registrations, key=lambda r: r.urn)
    ]
    exports = {
        name: "[secret]" if name in run.secret_exports else value
        for name, value in run.exports.items()
    }
    return {
        "stack": run.stack,
        "resourceCount": len(resources),
        "counts": dict(sorted(Counter(r.type for r in run.registrations).items())),
        "resources": resources,
        "exports": exports,
    }


def _parse_overrides(items: list[str]) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set expects key=value, got {item!r}")
        full = name if ":" in name else f"{offline.PROJECT}:{name}"
        try:
            overrides[full] = json.loads(value)
        except json.JSONDecodeError:
            overrides[full] = value
    return overrides


def _print_costs(
    run: offline.StackRun, overrides: dict[str, Any], out: TextIO
) -> cost.CostTable | None:
    """The AWS side's idle and busy monthly cost (aws-gpu only)."""
    if offline.role_of(run.stack) != STACK_AWS_GPU:
        return None
    costs = cost.aws_costs(cost.aws_settings(overrides), cost.load_prices())
    print("", file=out)
    for line in cost.render(costs):
        print(line, file=out)
    return costs


def _write_json(
    run: offline.StackRun, costs: cost.CostTable | None, json_path: str, out: TextIO
) -> None:
    data = plan_json(run)
    if costs is not None:
        data["costUsd"] = {
            "pricesDate": costs.prices.date,
            "idlePerMonth": round(costs.idle_total, 2),
            "busyPerGpuHour": round(costs.busy_hour_total, 4),
        }
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    if json_path == "-":
        sys.stdout.write(text)
    else:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(text)
        print(f"plan JSON written to {json_path}", file=out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.plan", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("stack", help="stack name: " + ", ".join(offline.STACK_ORDER))
    parser.add_argument(
        "--artifacts",
        type=Path,
        help="directory for rendered artifacts (default build/plan/<stack>)",
    )
    parser.add_argument(
        "--json", dest="json_path", help="write the plan as JSON to this file ('-' for stdout)"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key path as `pulumi config set --path` takes it ('hybridgpu:' "
        "optional), e.g. aws.gpuWorker.instanceType=g5.xlarge; the value is JSON or a string "
        "(keys: docs/reference.md)",
    )
    args = parser.parse_args(argv)

    if args.stack not in offline.STACK_ORDER:
        print(
            f"error: unknown stack '{args.stack}'; known: {', '.join(offline.STACK_ORDER)}",
            file=sys.stderr,
        )
        return 2
    overrides = _parse_overrides(args.overrides)
    try:
        run = offline.run_with_dependencies(args.stack, overrides)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    out = sys.stderr if args.json_path == "-" else sys.stdout
    print(
        f"Offline plan of stack '{run.stack}' (mocked providers; rendered artifacts are real)",
        file=out,
    )
    print("", file=out)
    for line in resource_tree(run):
        print(line, file=out)
    counts = Counter(r.type for r in run.registrations)
    print(f"\n{len(run.registrations)} resources:", file=out)
    for typ, count in sorted(counts.items()):
        print(f"  {count:4d}  {typ}", file=out)
    print("\nExports:", file=out)
    for name, value in run.exports.items():
        shown = "[secret]" if name in run.secret_exports else json.dumps(value)
        if len(shown) > 100:
            shown = shown[:97] + "..."
        print(f"  {name} = {shown}", file=out)

    costs = _print_costs(run, overrides, out)

    target = args.artifacts or offline.REPO_ROOT / "build" / "plan" / run.stack
    target.mkdir(parents=True, exist_ok=True)
    for old in target.iterdir():
        if old.is_file():
            old.unlink()
    written = 0
    for name, text, secret in [*artifacts(run), *component_artifacts(run)]:
        path = target / name
        path.write_text(text)
        # Under mocks secrets are placeholders, but keep the habit: secret files are owner-only.
        path.chmod(0o600 if secret else 0o644)
        written += 1
    print(f"\n{written} rendered artifacts written to {target}", file=out)

    if args.json_path:
        _write_json(run, costs, args.json_path, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
