"""Ordered up and destroy of both stacks with the Automation API: ``./dev up``, ``./dev destroy``.

homelab reads aws-gpu's outputs through a StackReference and runs Ollama on aws-gpu's GPU worker,
so ``up`` goes aws-gpu then homelab, ``destroy`` homelab then aws-gpu, and destroying aws-gpu is
refused while the homelab stack still has resources. The first failure stops the sequence: the
later stacks are not touched, and the error names the failed stack and what was skipped.

    python -m tools.deploy up [aws-gpu|homelab ...]
    python -m tools.deploy destroy [aws-gpu|homelab ...] --yes

Every ``up`` runs the mandatory policy pack (``policy/``). Progress is streamed line by line,
prefixed with the stack name. The ordering works on the small :class:`Workspace` protocol;
:class:`AutomationWorkspace` is the real one (needs the Pulumi CLI), tests use a fake.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TextIO

from tools.offline import REPO_ROOT, STACK_ORDER

POLICY_PACK = REPO_ROOT / "policy"
STATE_ONLY_TYPES = ("pulumi:pulumi:Stack", "pulumi:providers:")


class StackHandle(Protocol):
    def up(self, *, on_output: Callable[[str], Any], policy_packs: Sequence[str]) -> object: ...

    def destroy(self, *, on_output: Callable[[str], Any]) -> object: ...

    def resource_count(self) -> int:
        """Resources the stack's state still manages (not counting the stack and providers)."""
        ...


class Workspace(Protocol):
    def stack(self, name: str) -> StackHandle | None:
        """The stack, or None when it does not exist in the backend."""
        ...


class OperationError(Exception):
    """A stack operation failed or was refused; nothing after it ran."""


@dataclass(frozen=True)
class Plan:
    operation: str
    stacks: tuple[str, ...]


def ordered(operation: str, requested: Sequence[str] | None) -> Plan:
    unknown = sorted(set(requested or ()) - set(STACK_ORDER))
    if unknown:
        raise OperationError(
            f"unknown stack(s) {', '.join(unknown)}; this project has {', '.join(STACK_ORDER)}"
        )
    chosen = [s for s in STACK_ORDER if not requested or s in requested]
    return Plan(operation, tuple(reversed(chosen) if operation == "destroy" else chosen))


def _printer(stack: str, out: TextIO) -> Callable[[str], None]:
    def emit(text: str) -> None:
        for line in text.splitlines() or [""]:
            out.write(f"[{stack}] {line}\n")
        out.flush()

    return emit


def _skipped(plan: Plan, index: int) -> str:
    rest = plan.stacks[index + 1 :]
    return f"; not run: {', '.join(rest)}" if rest else ""


def up(
    workspace: Workspace,
    stacks: Sequence[str] | None = None,
    *,
    policy_packs: Sequence[str] = (str(POLICY_PACK),),
    out: TextIO = sys.stdout,
) -> None:
    plan = ordered("up", stacks)
    for index, name in enumerate(plan.stacks):
        handle = workspace.stack(name)
        if handle is None:
            raise OperationError(
                f"stack '{name}' does not exist (pulumi stack init {name}){_skipped(plan, index)}"
            )
        out.write(f"== pulumi up {name} (policy packs: {', '.join(policy_packs)})\n")
        try:
            handle.up(on_output=_printer(name, out), policy_packs=list(policy_packs))
        except Exception as error:
            raise OperationError(f"up of '{name}' failed{_skipped(plan, index)}") from error


def dependents(name: str) -> tuple[str, ...]:
    """Stacks that read ``name``'s outputs: every stack after it in the deploy order."""
    return STACK_ORDER[STACK_ORDER.index(name) + 1 :]


def destroy(
    workspace: Workspace, stacks: Sequence[str] | None = None, *, out: TextIO = sys.stdout
) -> None:
    plan = ordered("destroy", stacks)
    for index, name in enumerate(plan.stacks):
        for dependent in dependents(name):
            handle = workspace.stack(dependent)
            remaining = handle.resource_count() if handle is not None else 0
            if remaining:
                raise OperationError(
                    f"refusing to destroy '{name}': stack '{dependent}' still has {remaining} "
                    f"resource(s) and depends on it (StackReference, offloaded workloads); "
                    f"destroy '{dependent}' first{_skipped(plan, index)}"
                )
        handle = workspace.stack(name)
        if handle is None:
            out.write(f"== {name}: no such stack, nothing to destroy\n")
            continue
        out.write(f"== pulumi destroy {name}\n")
        try:
            handle.destroy(on_output=_printer(name, out))
        except Exception as error:
            raise OperationError(f"destroy of '{name}' failed{_skipped(plan, index)}") from error


# --------------------------------------------------------------------------------------------
# The real workspace (Pulumi CLI through the Automation API)
# --------------------------------------------------------------------------------------------


class AutomationStack:
    def __init__(self, stack: Any) -> None:
        self._stack = stack

    def up(self, *, on_output: Callable[[str], Any], policy_packs: Sequence[str]) -> object:
        return self._stack.up(on_output=on_output, policy_packs=list(policy_packs))

    def destroy(self, *, on_output: Callable[[str], Any]) -> object:
        return self._stack.destroy(on_output=on_output)

    def resource_count(self) -> int:
        resources = self._stack.export_stack().deployment.get("resources") or []
        return sum(1 for r in resources if not str(r.get("type", "")).startswith(STATE_ONLY_TYPES))


class AutomationWorkspace:
    """Stacks of this project in the current backend (``pulumi login``/``PULUMI_BACKEND_URL``)."""

    def __init__(self, organization: str | None = None) -> None:
        if shutil.which("pulumi") is None:
            raise OperationError(
                "the Pulumi CLI is not on PATH; install it (>= 3.200, "
                "https://www.pulumi.com/docs/iac/download-install/) and log in to the backend"
            )
        self.organization = organization

    def stack(self, name: str) -> StackHandle | None:
        from pulumi import automation  # noqa: PLC0415 - only the real workspace needs the CLI

        full_name = f"{self.organization}/hybridgpu/{name}" if self.organization else name
        try:
            return AutomationStack(
                automation.select_stack(stack_name=full_name, work_dir=str(REPO_ROOT))
            )
        except automation.StackNotFoundError:
            return None


def main(argv: Sequence[str] | None = None, workspace: Workspace | None = None) -> int:
    parser = argparse.ArgumentParser(description="Ordered up/destroy of both stacks")
    parser.add_argument("operation", choices=("up", "destroy"))
    parser.add_argument("stacks", nargs="*", help=f"subset of {', '.join(STACK_ORDER)}")
    parser.add_argument("--org", help="Pulumi Cloud organization (DIY backends need none)")
    parser.add_argument("--yes", action="store_true", help="confirm destroy")
    args = parser.parse_args(argv)
    try:
        if args.operation == "destroy" and not args.yes:
            order = " then ".join(ordered("destroy", args.stacks).stacks)
            print(f"destroy deletes {order}; run again with --yes to confirm", file=sys.stderr)
            return 2
        workspace = workspace or AutomationWorkspace(args.org)
        if args.operation == "up":
            up(workspace, args.stacks)
        else:
            destroy(workspace, args.stacks)
    except OperationError as error:
        cause = f": {error.__cause__}" if error.__cause__ else ""
        print(f"error: {error}{cause}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
