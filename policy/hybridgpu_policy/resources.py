"""What a rule sees of a resource: the same for a single-resource check and a whole-stack check,
and independent of pulumi_policy (so rules are plain functions, tested without an engine)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Resource:
    type: str
    name: str
    urn: str
    props: Mapping[str, Any]
    """Inputs in the engine's wire format (secret markers kept, unknowns as sentinels)."""
    provider_props: Mapping[str, Any] | None = None
    """Inputs of the resource's provider (e.g. the AWS provider's ``defaultTags``)."""
    property_dependencies: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Input name -> URNs of the resources that input was computed from (stack checks only)."""

    @property
    def label(self) -> str:
        """``Instance 'gpu-worker-instance'``: how messages name the resource."""
        return f"{self.type.rsplit(':', 1)[-1]} '{self.name}'"


ResourceCheck = Callable[[Resource, Mapping[str, Any]], Iterator[str]]
"""(resource, policy config) -> violation messages."""
StackCheck = Callable[[Sequence[Resource], Mapping[str, Any]], Iterator[tuple[str, str]]]
"""(all resources, policy config) -> (URN, violation message) pairs."""


@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    resource_check: ResourceCheck | None = None
    stack_check: StackCheck | None = None
    config_schema: Mapping[str, Any] = field(default_factory=dict)
    """JSON-schema properties of the policy's config (``pulumi preview --policy-pack-config``)."""
