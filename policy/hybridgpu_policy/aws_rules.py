"""AWS rules: IMDSv2, encrypted EBS, no world-open TCP, NVIDIA GPU workers, cost tags.

Each check yields messages of the form "<Type> '<name>': <what is wrong>. Fix: <what to set>".
A value still unknown during preview makes a check silent for that value (it runs again at up).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Mapping
from importlib import resources as package_data
from typing import Any

from hybridgpu_policy.resources import Resource
from hybridgpu_policy.values import Unknown, get, is_unknown, json_object, known, plain

INSTANCE = "aws:ec2/instance:Instance"
SPOT_REQUEST = "aws:ec2/spotInstanceRequest:SpotInstanceRequest"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
VOLUME = "aws:ebs/volume:Volume"
MACHINES = (INSTANCE, SPOT_REQUEST, LAUNCH_TEMPLATE)


# --------------------------------------------------------------------------------------------
# IMDSv2
# --------------------------------------------------------------------------------------------


def imdsv2_required(resource: Resource, _config: Mapping[str, Any]) -> Iterator[str]:
    if resource.type not in MACHINES:
        return
    try:
        endpoint = known(get(resource.props, "metadataOptions.httpEndpoint"))
        tokens = known(get(resource.props, "metadataOptions.httpTokens"))
    except Unknown:
        return
    if endpoint == "disabled" or tokens == "required":
        return
    yield (
        f"{resource.label}: the instance metadata service accepts IMDSv1 "
        f"(metadataOptions.httpTokens is {tokens or 'unset'}), so any SSRF or process on the node "
        "can read the instance role's credentials with one GET. "
        "Fix: metadata_options with http_tokens='required' (hop limit 2 for pods)."
    )


# --------------------------------------------------------------------------------------------
# Encrypted EBS
# --------------------------------------------------------------------------------------------


def _encrypted(volume: Any) -> bool:
    """Whether an EBS volume spec says encrypted; an unknown value counts as yes for now."""
    volume = plain(volume)
    if is_unknown(volume):
        return True
    if not isinstance(volume, Mapping):
        return False
    flag = volume.get("encrypted")
    return is_unknown(flag) or flag is True or (isinstance(flag, str) and flag.lower() == "true")


def _entries(value: Any) -> list[Any]:
    value = plain(value)
    return [v for v in value if isinstance(v, Mapping)] if isinstance(value, list) else []


def encrypted_ebs(resource: Resource, _config: Mapping[str, Any]) -> Iterator[str]:
    props = resource.props
    fix = "Fix: encrypted=True on every EBS volume (optionally kms_key_id)."
    if resource.type in (INSTANCE, SPOT_REQUEST):
        if not _encrypted(get(props, "rootBlockDevice")):
            yield (
                f"{resource.label}: the root volume is not encrypted (rootBlockDevice.encrypted "
                "is not true; without it the AMI snapshot decides). "
                "Fix: root_block_device with encrypted=True."
            )
        for index, device in enumerate(_entries(get(props, "ebsBlockDevices"))):
            if not _encrypted(device):
                name = device.get("deviceName", f"#{index}")
                yield f"{resource.label}: EBS volume {name} is not encrypted. {fix}"
    elif resource.type == VOLUME:
        if not _encrypted(props):
            yield f"{resource.label}: the EBS volume is not encrypted. {fix}"
    elif resource.type == LAUNCH_TEMPLATE:
        mappings = get(props, "blockDeviceMappings")
        if mappings is None:
            yield (
                f"{resource.label}: no blockDeviceMappings, so the root volume's encryption is "
                "whatever the AMI snapshot has. Fix: a block_device_mappings entry for the root "
                "device with ebs.encrypted='true'."
            )
        for index, mapping in enumerate(_entries(mappings)):
            if "ebs" in mapping and not _encrypted(mapping["ebs"]):
                name = mapping.get("deviceName", f"#{index}")
                yield f"{resource.label}: EBS volume {name} is not encrypted. {fix}"


# --------------------------------------------------------------------------------------------
# No TCP from the whole internet
# --------------------------------------------------------------------------------------------

SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
DEFAULT_SECURITY_GROUP = "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup"
SECURITY_GROUP_RULE = "aws:ec2/securityGroupRule:SecurityGroupRule"
VPC_INGRESS_RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
# Protocols that include TCP: by name, by number (6), or all (-1).
TCP_PROTOCOLS = frozenset({"tcp", "6", "-1", "all"})


def _protocol(value: Any) -> str:
    text = str(value).lower()
    try:
        return str(int(float(text)))
    except ValueError:
        return text


def _is_world(cidr: Any) -> bool:
    if not isinstance(cidr, str) or is_unknown(cidr):
        return False
    try:
        return ipaddress.ip_network(cidr, strict=False).prefixlen == 0
    except ValueError:
        return False


def _ingress_entries(resource: Resource) -> Iterator[dict[str, Any]]:
    """(protocol, ports, sources) of each ingress rule the resource declares."""
    props = plain(resource.props)
    if resource.type in (SECURITY_GROUP, DEFAULT_SECURITY_GROUP):
        for entry in props.get("ingress") or []:
            if isinstance(entry, Mapping):
                yield {
                    "protocol": entry.get("protocol"),
                    "from": entry.get("fromPort"),
                    "to": entry.get("toPort"),
                    "sources": [
                        *(entry.get("cidrBlocks") or []),
                        *(entry.get("ipv6CidrBlocks") or []),
                    ],
                }
    elif resource.type == SECURITY_GROUP_RULE and props.get("type") == "ingress":
        yield {
            "protocol": props.get("protocol"),
            "from": props.get("fromPort"),
            "to": props.get("toPort"),
            "sources": [*(props.get("cidrBlocks") or []), *(props.get("ipv6CidrBlocks") or [])],
        }
    elif resource.type == VPC_INGRESS_RULE:
        yield {
            "protocol": props.get("ipProtocol"),
            "from": props.get("fromPort"),
            "to": props.get("toPort"),
            "sources": [props.get("cidrIpv4"), props.get("cidrIpv6")],
        }


def _ports(entry: Mapping[str, Any]) -> str:
    low, high = entry.get("from"), entry.get("to")
    if _protocol(entry.get("protocol")) in ("-1", "all"):
        return "all ports (every protocol)"
    low_text = int(low) if isinstance(low, int | float) else low
    high_text = int(high) if isinstance(high, int | float) else high
    return f"TCP {low_text}" if low_text == high_text else f"TCP {low_text}-{high_text}"


def no_world_open_tcp(resource: Resource, _config: Mapping[str, Any]) -> Iterator[str]:
    for entry in _ingress_entries(resource):
        if _protocol(entry.get("protocol")) not in TCP_PROTOCOLS:
            continue
        for source in entry["sources"]:
            if _is_world(source):
                yield (
                    f"{resource.label}: {_ports(entry)} is open to {source} (the whole "
                    "internet). Fix: allow only the admin ranges (hybridgpu:aws adminCidrs) or "
                    "reach the port over the Nebula overlay; only Nebula's UDP port faces the "
                    "internet."
                )


# --------------------------------------------------------------------------------------------
# GPU workers are NVIDIA GPU instance types
# --------------------------------------------------------------------------------------------

# Families whose GPUs are NVIDIA's (https://docs.aws.amazon.com/ec2/latest/instancetypes/ac.html);
# the same list as the program's NVIDIA_GPU_FAMILIES (stacks/config/gpu_instances.py; a test
# keeps them equal). Policy config `allowedFamilies` replaces it.
DEFAULT_GPU_FAMILIES = (
    "g4dn",
    "g5",
    "g6",
    "g6e",
    "gr6",
    "p3",
    "p3dn",
    "p4d",
    "p4de",
    "p5",
    "p5e",
    "p5en",
)


def _role_says_gpu(resource: Resource) -> bool:
    tags = plain(get(resource.props, "tags")) or {}
    role = tags.get("Role", "") if isinstance(tags, Mapping) else ""
    return "gpu" in resource.name.lower() or "gpu" in str(role).lower()


def nvidia_gpu_workers(resource: Resource, config: Mapping[str, Any]) -> Iterator[str]:
    if resource.type not in MACHINES or not _role_says_gpu(resource):
        return
    allowed = tuple(config.get("allowedFamilies") or DEFAULT_GPU_FAMILIES)
    try:
        instance_type = known(get(resource.props, "instanceType"))
    except Unknown:
        return
    family = str(instance_type).split(".", 1)[0] if instance_type else ""
    if family in allowed:
        return
    yield (
        f"{resource.label}: a GPU worker with instance type {instance_type or 'unset'}, which is "
        f"not an NVIDIA GPU family (allowed: {', '.join(allowed)}); the NVIDIA driver, device "
        "plugin and CUDA workloads need one. Fix: hybridgpu:aws gpuWorker.instanceType, e.g. "
        "g4dn.xlarge."
    )


# --------------------------------------------------------------------------------------------
# Cost tags
# --------------------------------------------------------------------------------------------

DEFAULT_COST_TAGS = ("Project", "Stack")


def taggable_types() -> frozenset[str]:
    """AWS resource types that accept ``tags`` (generated from the pinned pulumi_aws SDK by
    ``python -m tools.aws_taggable``; a test keeps the file equal to the installed SDK)."""
    text = package_data.files("hybridgpu_policy").joinpath("aws_taggable_types.txt").read_text()
    return frozenset(line for line in text.splitlines() if line and not line.startswith("#"))


_TAGGABLE = taggable_types()


def _provider_default_tags(provider_props: Mapping[str, Any] | None) -> dict[str, Any]:
    if not provider_props:
        return {}
    default_tags = json_object(provider_props.get("defaultTags"))
    if not isinstance(default_tags, Mapping):
        return {}
    tags = default_tags.get("tags")
    return dict(tags) if isinstance(tags, Mapping) else {}


def cost_tags(resource: Resource, config: Mapping[str, Any]) -> Iterator[str]:
    if not resource.type.startswith("aws:") or resource.type not in _TAGGABLE:
        return
    required = tuple(config.get("requiredTags") or DEFAULT_COST_TAGS)
    try:
        own = known(get(resource.props, "tags")) or {}
        defaults = _provider_default_tags(resource.provider_props)
    except Unknown:
        return
    if isinstance(own, list):  # autoscaling groups: [{key, value, propagateAtLaunch}], no defaults
        effective = {t.get("key"): t.get("value") for t in own if isinstance(t, Mapping)}
    else:
        effective = {**defaults, **own}
    missing = [key for key in required if not effective.get(key)]
    if missing:
        yield (
            f"{resource.label}: cost tag(s) {', '.join(missing)} missing, so its spend is not "
            "attributed (the budget filters on Project). Fix: keep the stack's AWS provider with "
            "default_tags (stacks/aws_gpu.py default_tags) and pass it to this resource, or set "
            "the tags on it."
        )
