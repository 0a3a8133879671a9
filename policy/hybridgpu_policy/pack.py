"""The policy pack: the rules as CrossGuard policies, all mandatory.

``serve()`` is what ``__main__.py`` runs when the engine starts the pack
(``pulumi preview --policy-pack policy``). Tests build the same policies with :func:`policies`
and drive them through pulumi_policy's own analyzer service, as the engine does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    Policy,
    PolicyConfigSchema,
    PolicyPack,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy import deserialize as policy_deserialize
from pulumi_policy import policy as policy_runtime
from pulumi_policy.proxy import _DictProxy, _ListProxy

from hybridgpu_policy import aws_rules, kube_rules, s3_rules, secret_rules
from hybridgpu_policy.resources import Resource, Rule
from hybridgpu_policy.values import SECRET_SIG, SIG_KEY

PACK_NAME = "hybridgpu"

RULES: tuple[Rule, ...] = (
    Rule(
        "ec2-imdsv2-required",
        "EC2 instances and launch templates require IMDSv2 (session tokens).",
        resource_check=aws_rules.imdsv2_required,
    ),
    Rule(
        "ebs-encrypted",
        "Every EBS volume (root and data, instances and launch templates) is encrypted.",
        resource_check=aws_rules.encrypted_ebs,
    ),
    Rule(
        "s3-bucket-private-encrypted-tls-only",
        "S3 buckets block all public access, are encrypted at rest and refuse plain HTTP.",
        stack_check=s3_rules.private_encrypted_tls_only_buckets,
    ),
    Rule(
        "no-world-open-tcp-ingress",
        "No security group admits TCP from 0.0.0.0/0 or ::/0.",
        resource_check=aws_rules.no_world_open_tcp,
    ),
    Rule(
        "helm-chart-version-pinned",
        "Every Helm chart is pinned to one exact version.",
        resource_check=kube_rules.pinned_helm_charts,
    ),
    Rule(
        "container-image-pinned",
        "Every container image is pinned (digest or exact tag; never latest or missing).",
        resource_check=kube_rules.pinned_images,
    ),
    Rule(
        "secrets-are-pulumi-secrets",
        "Secrets reaching a command (environment, stdin, SSH credentials), a Kubernetes Secret "
        "or Helm values are Pulumi secrets.",
        resource_check=secret_rules.secrets_are_pulumi_secrets,
    ),
    Rule(
        "gpu-worker-nvidia-instance-type",
        "GPU workers run on NVIDIA GPU instance families.",
        resource_check=aws_rules.nvidia_gpu_workers,
        config_schema={
            "allowedFamilies": {
                "type": "array",
                "items": {"type": "string"},
                "default": list(aws_rules.DEFAULT_GPU_FAMILIES),
            }
        },
    ),
    Rule(
        "aws-cost-tags",
        "Taggable AWS resources carry the cost tags (provider default tags count).",
        resource_check=aws_rules.cost_tags,
        config_schema={
            "requiredTags": {
                "type": "array",
                "items": {"type": "string"},
                "default": list(aws_rules.DEFAULT_COST_TAGS),
            }
        },
    ),
)


# --------------------------------------------------------------------------------------------
# Secret markers
# --------------------------------------------------------------------------------------------

_ORIGINAL_DESERIALIZE = policy_deserialize.deserialize_properties


def _keep(value: Any) -> Any:
    if isinstance(value, list):
        return [_keep(v) for v in value]
    if isinstance(value, dict):
        signature = value.get(SIG_KEY)
        if signature == SECRET_SIG:
            return {SIG_KEY: SECRET_SIG, "value": _keep(value.get("value"))}
        if signature is not None:  # an asset or archive: as pulumi_policy reads it
            return _ORIGINAL_DESERIALIZE({"v": value})["v"]
        return {k: _keep(v) for k, v in value.items()}
    return value


def _deserialize_keeping_secrets(props: dict[str, Any], proxy_secrets: bool = False) -> Any:
    if proxy_secrets:  # remediation path: unchanged
        return _ORIGINAL_DESERIALIZE(props, proxy_secrets)
    return {k: _keep(v) for k, v in props.items()}


def keep_secret_markers() -> None:
    """Let the rules see which values are Pulumi secrets.

    The engine sends secret markers (pulumi/pulumi sdk/go/common/resource/plugin/
    analyzer_plugin.go: ``Analyze`` marshals with ``KeepSecrets: true``), but pulumi_policy 1.21.0
    drops them before calling a policy (pulumi_policy/policy.py ``Analyze`` and ``AnalyzeStack``
    call ``deserialize_properties`` without ``proxy_secrets``; no public API tells a policy what is
    secret: pulumi/pulumi-policy#241). This swaps that module's reference for a deserializer that
    keeps the markers; the rules read values through ``values.plain``/``values.get``.
    """
    policy_runtime.deserialize_properties = _deserialize_keeping_secrets  # type: ignore[attr-defined]


# --------------------------------------------------------------------------------------------
# Policies
# --------------------------------------------------------------------------------------------


def raw(value: Any) -> Any:
    """Plain dicts and lists from pulumi_policy's unknown-checking proxies (unknowns stay as their
    sentinel strings, which the rules treat as "not yet known")."""
    if isinstance(value, _DictProxy):
        return {k: raw(v) for k, v in value["__target"].items()}
    if isinstance(value, _ListProxy):
        return [raw(v) for v in value["__target"]]
    return value


def _config(args: ResourceValidationArgs | StackValidationArgs) -> Mapping[str, Any]:
    return args.get_config() or {}


def _resource_policy(rule: Rule) -> ResourceValidationPolicy:
    check = rule.resource_check
    assert check is not None

    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        resource = Resource(
            type=args.resource_type,
            name=args.name,
            urn=args.urn,
            props=raw(args.props),
            provider_props=raw(args.provider.props) if args.provider else None,
        )
        for message in check(resource, _config(args)):
            report_violation(message, None)

    return ResourceValidationPolicy(
        name=rule.name,
        description=rule.description,
        validate=validate,
        config_schema=PolicyConfigSchema(dict(rule.config_schema)) if rule.config_schema else None,
    )


def _stack_policy(rule: Rule) -> StackValidationPolicy:
    check = rule.stack_check
    assert check is not None

    def validate(args: StackValidationArgs, report_violation: ReportViolation) -> None:
        resources: Sequence[Resource] = [
            Resource(
                type=r.resource_type,
                name=r.name,
                urn=r.urn,
                props=raw(r.props),
                provider_props=raw(r.provider.props) if r.provider else None,
                property_dependencies={
                    key: tuple(dep.urn for dep in deps)
                    for key, deps in r.property_dependencies.items()
                },
            )
            for r in args.resources
        ]
        for urn, message in check(resources, _config(args)):
            report_violation(message, urn)

    return StackValidationPolicy(name=rule.name, description=rule.description, validate=validate)


def policies() -> list[Policy]:
    built: list[Policy] = []
    for rule in RULES:
        built.append(_resource_policy(rule) if rule.resource_check else _stack_policy(rule))
    return built


def serve() -> None:
    """Run the pack (blocks; the engine talks to it over gRPC)."""
    keep_secret_markers()
    PolicyPack(
        name=PACK_NAME,
        policies=policies(),
        enforcement_level=EnforcementLevel.MANDATORY,
    )
