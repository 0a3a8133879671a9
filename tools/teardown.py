"""Tear the homelab stack down when the AWS cluster it federates with is gone.

``pulumi destroy -s homelab`` deletes from state, without running the program, so the
StackReference and the SSM lookup are not involved; but three kinds of delete still talk to the
AWS cluster:

- the objects the homelab keeps on it (its Kubernetes provider ``aws-gpu-k8s``): with the API
  gone, each delete fails, and ``deleteUnreachable`` stays off on purpose (a transient outage
  must not drop objects from state);
- the peering command, whose delete runs ``liqoctl unpeer`` with both kubeconfigs: unpeer reads
  the provider's cluster id from the remote API first (liqotech/liqo
  pkg/liqoctl/unpeer/handler.go@v1.2.0, RunUnpeer);
- the homelab's Liqo release: Helm runs Liqo's pre-delete job, which refuses to uninstall while a
  ForeignCluster still has a module enabled or a namespace is offloaded (liqotech/liqo
  cmd/uninstaller/main.go and pkg/utils/preuninstall.go@v1.2.0, PreUninstall).

This prints, for a stack name, the exact commands that take those out of the homelab's state
(``pulumi state delete --target-dependents``: the resource and everything that depends on it
through a parent, a dependency, ``deletedWith``, ``replaceWith`` or its provider;
pulumi/pulumi pkg/resource/graph/dependency_graph.go@v3.259.0, OnlyDependsOn), then unprotect
and destroy. The resources removed from state are Kubernetes objects on the two clusters and the
peering command; the VMs, disks and tokens stay in state and are destroyed normally, and with
the VMs the homelab cluster and whatever Liqo left in it go too.

Usage: ``./dev teardown [--stack NAME]`` (default ``homelab``).
"""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from tools import offline
from tools.mocks import Registration

AWS_PROVIDER_NAME = "aws-gpu-k8s"
LIQO_RELEASE_NAME = "liqo-release"
PROVIDER_TYPE = "pulumi:providers:kubernetes"
RELEASE_TYPE = "kubernetes:helm.sh/v3:Release"
PLAN_STACK = "homelab"


@dataclass(frozen=True)
class TeardownPlan:
    state_deletes: tuple[str, ...]
    """URNs to delete from state with their dependents, in this order."""
    stack: str

    def commands(self) -> list[str]:
        flags = f"-s {shlex.quote(self.stack)}"
        return [
            *(
                f"pulumi state delete {flags} --target-dependents --yes {shlex.quote(urn)}"
                for urn in self.state_deletes
            ),
            f"pulumi state unprotect {flags} --all --yes",
            f"pulumi destroy {flags}",
        ]


def for_stack_name(urn: str, stack: str) -> str:
    """The URN the engine gives the same resource in a stack named ``stack``."""
    prefix = f"urn:pulumi:{PLAN_STACK}::"
    if not urn.startswith(prefix):
        raise ValueError(f"{urn} is not a URN of the {PLAN_STACK} plan")
    return f"urn:pulumi:{stack}::" + urn[len(prefix) :]


def plan(registrations: Sequence[Registration], stack: str = PLAN_STACK) -> TeardownPlan:
    """The homelab resources whose delete needs the AWS cluster: its provider there (with every
    object on it) and the Liqo release (with the peering and what was offloaded through it)."""

    def only(typ: str, name: str) -> str:
        found = [r.urn for r in registrations if r.type == typ and r.name == name]
        if len(found) != 1:
            raise ValueError(f"expected one {typ} named {name}, found {len(found)}")
        return found[0]

    return TeardownPlan(
        state_deletes=tuple(
            for_stack_name(urn, stack)
            for urn in (
                only(PROVIDER_TYPE, AWS_PROVIDER_NAME),
                only(RELEASE_TYPE, LIQO_RELEASE_NAME),
            )
        ),
        stack=stack,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--stack", default=PLAN_STACK, help="the homelab stack's name")
    args = parser.parse_args(argv)
    run = offline.run_with_dependencies(PLAN_STACK)
    print(f"# {args.stack}: the AWS cluster is gone; take what needs it out of state, then destroy")
    for command in plan(run.registrations, args.stack).commands():
        print(command)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
