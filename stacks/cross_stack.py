"""What the homelab checks against the aws-gpu stack it reads before registering anything: the
same network plan, the same project-wide values, and the gate that holds registration until
every check has passed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pulumi

from stacks.config import ConfigError, HomelabConfig, key


def check_same_network_plan(
    config: HomelabConfig, aws_plan: pulumi.Output[Any]
) -> pulumi.Output[Any]:
    """Both stacks must have validated the same ranges; a stack-level override in only one of
    them would let overlaps through."""
    ours = {k: str(v) for k, v in config.project.network.named_ranges().items()}

    def compare(theirs: dict[str, str]) -> dict[str, str]:
        differing = sorted(k for k in ours if theirs.get(k) != ours[k])
        if differing:
            first = differing[0]
            raise ConfigError(
                f"{key(first)}: homelab has {ours[first]} but the aws-gpu stack was deployed with "
                f"{theirs.get(first)}; set the network plan once, in Pulumi.yaml "
                f"(differing keys: {', '.join(differing)})"
            )
        return theirs

    return aws_plan.apply(compare)


def check_same_value(
    config_key: str, ours: str, theirs: pulumi.Output[Any], why: str
) -> pulumi.Output[Any]:
    """A project-wide key both stacks must have deployed with the same value."""

    def compare(value: Any) -> Any:
        if value != ours:
            raise ConfigError(
                f"{key(config_key)}: homelab has '{ours}' but the aws-gpu stack was deployed "
                f"with '{value}'; {why}. Set it once, in Pulumi.yaml, and update aws-gpu first"
            )
        return value

    return theirs.apply(compare)


def gate(*checks: pulumi.Output[Any]) -> pulumi.Output[list[pulumi.Resource]]:
    """An empty dependency list that resolves once every check has passed: a resource that
    depends on it is never registered (so never created) after a failed check. Checks of values
    read from aws-gpu are outputs, and the Python SDK would otherwise only surface their errors
    at the end of the program (pulumi/runtime/stack.py, wait_for_rpcs)."""
    return pulumi.Output.all(*checks).apply(lambda _: [])


def wake_gate_error(ours: bool, theirs: dict[str, Any]) -> ConfigError | None:
    """Why the homelab's ``ollama.wakeGate`` does not fit the aws-gpu stack's ``wakeGate``
    output; None when it does. A sleeping AWS side with no gate would never wake; a gate in
    front of a control node that never sleeps has no credentials to start it with."""
    sleeps = bool(theirs.get("sleeps"))
    if ours == sleeps:
        return None
    if sleeps:
        return ConfigError(
            f"{key('homelab')}.ollama.wakeGate: false, but the aws-gpu stack's control node "
            "sleeps (gpuWaker.sleepAfterMinutes) and nothing else would start it; set it to "
            "true, or set hybridgpu:aws.gpuWaker.sleepAfterMinutes to null and update aws-gpu "
            "first"
        )
    return ConfigError(
        f"{key('homelab')}.ollama.wakeGate: true, but the aws-gpu stack's control node never "
        "sleeps (gpuWaker.sleepAfterMinutes is null), so it made no wake credentials; set it "
        "to false, or set a sleepAfterMinutes and update aws-gpu first"
    )


def checked(
    theirs: pulumi.Output[Any], error_of: Callable[[Any], ConfigError | None]
) -> pulumi.Output[Any]:
    """``theirs`` (an aws-gpu output), failing with ``error_of(value)`` when that is an error:
    a gate check (nothing is registered after it fails)."""

    def compare(value: Any) -> Any:
        error = error_of(value)
        if error is not None:
            raise error
        return value

    return theirs.apply(compare)


def check_wake_gate(ours: bool, theirs: pulumi.Output[Any]) -> pulumi.Output[Any]:
    return checked(theirs, lambda value: wake_gate_error(ours, value))
