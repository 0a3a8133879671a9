"""Run the policy pack on recorded resources the way the Pulumi engine runs it.

The engine sends each resource to the pack's analyzer service as an ``AnalyzeRequest`` (inputs in
wire format, secret markers kept, the provider's inputs alongside) and, at the end, the whole stack
as an ``AnalyzeStackRequest`` with property dependencies (pulumi/pulumi
sdk/go/common/resource/plugin/analyzer_plugin.go). This builds the same protobuf requests from an
offline run's registrations and hands them to pulumi_policy's own service class, so the pack's
wiring (secret markers, proxies, config, report_violation) is what is tested, not only the rules.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
from google.protobuf import struct_pb2
from hybridgpu_policy import pack
from pulumi.runtime.proto import analyzer_pb2
from pulumi_policy import EnforcementLevel
from pulumi_policy.policy import _PolicyAnalyzerServicer

from tools.mocks import Registration

SIG_KEY = "4dabf18193072939515e22adb298388d"
ASSET_SIG = "c44067f5952c0a294b673a41bacd8c17"


@dataclass(frozen=True)
class Violation:
    policy: str
    urn: str
    message: str


def wire(value: Any) -> Any:
    """A recorded input in the engine's wire format (assets as signature maps)."""
    if isinstance(value, pulumi.StringAsset):
        return {SIG_KEY: ASSET_SIG, "text": value.text}
    if isinstance(value, pulumi.FileAsset):
        return {SIG_KEY: ASSET_SIG, "path": str(value.path)}
    if isinstance(value, dict):
        return {k: wire(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [wire(v) for v in value]
    return value


def struct(props: dict[str, Any]) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(wire(props))
    return message


class PolicyEngine:
    """The pack as the engine starts it (secret markers kept), minus the gRPC socket."""

    def __init__(self, config: dict[str, dict[str, Any]] | None = None) -> None:
        pack.keep_secret_markers()
        self.servicer = _PolicyAnalyzerServicer(
            pack.PACK_NAME,
            "1.0.0",
            pack.policies(),
            EnforcementLevel.MANDATORY,
            initial_config=dict(config) if config else None,
        )

    @staticmethod
    def _provider(
        registration: Registration, providers: dict[str, Registration]
    ) -> analyzer_pb2.AnalyzerProviderResource | None:
        urn = registration.provider.rsplit("::", 1)[0] if registration.provider else ""
        provider = providers.get(urn)
        if provider is None:
            return None
        return analyzer_pb2.AnalyzerProviderResource(
            type=provider.type,
            properties=struct(provider.inputs),
            urn=provider.urn,
            name=provider.name,
        )

    def analyze(self, registrations: Sequence[Registration]) -> list[Violation]:
        managed = [r for r in registrations if not r.read]
        providers = {r.urn: r for r in managed if r.type.startswith("pulumi:providers:")}
        found: list[Violation] = []
        for registration in (r for r in managed if r.custom):
            request = analyzer_pb2.AnalyzeRequest(
                type=registration.type,
                properties=struct(registration.inputs),
                urn=registration.urn,
                name=registration.name,
                options=analyzer_pb2.AnalyzerResourceOptions(
                    protect=registration.protect,
                    additionalSecretOutputs=list(registration.additional_secret_outputs),
                ),
                provider=self._provider(registration, providers),
            )
            response = self.servicer.Analyze(request, None)
            found += [
                Violation(d.policyName, d.urn or registration.urn, d.message)
                for d in response.diagnostics
            ]
        stack_request = analyzer_pb2.AnalyzeStackRequest(
            resources=[
                analyzer_pb2.AnalyzerResource(
                    type=r.type,
                    properties=struct(r.inputs),
                    urn=r.urn,
                    name=r.name,
                    provider=self._provider(r, providers),
                    parent=r.parent,
                    dependencies=list(r.dependencies),
                    propertyDependencies={
                        key: analyzer_pb2.AnalyzerPropertyDependencies(urns=list(urns))
                        for key, urns in r.property_dependencies.items()
                        if urns
                    },
                )
                for r in managed
            ]
        )
        response = self.servicer.AnalyzeStack(stack_request, None)
        found += [Violation(d.policyName, d.urn, d.message) for d in response.diagnostics]
        return found


def messages(violations: Iterable[Violation]) -> list[str]:
    return [f"[{v.policy}] {v.urn}: {v.message}" for v in violations]
