"""Building blocks of every config model: the project namespace, reusable validated field types
(pinned versions, DNS labels, host names, images, quantities, ports) and the ``Model`` base that
maps camelCase YAML keys and rejects unknown ones."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from components.kube.charts import DIGEST_PATTERN, parse_image

PROJECT = "hybridgpu"
"""Config namespace: the project name in Pulumi.yaml."""


def key(name: str) -> str:
    """The fully qualified config key, as the operator types it."""
    return f"{PROJECT}:{name}"


# k3s release tags look like v1.33.5+k3s1 (https://github.com/k3s-io/k3s/releases). A channel
# name ("stable", "latest") or a bare minor would let two `pulumi up` runs install different code.
K3S_VERSION_PATTERN = re.compile(r"^v\d+\.\d+\.\d+\+k3s\d+$")
# Helm chart and image versions must be exact: 1.2.3 or v1.2.3, optional pre-release suffix.
EXACT_VERSION_PATTERN = re.compile(r"^v?\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?$")
DNS_LABEL_PATTERN = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
SSH_PUBLIC_KEY_PATTERN = re.compile(
    r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com)"
    r" [A-Za-z0-9+/=]+( .*)?$"
)


def _k3s_version(value: str) -> str:
    if not K3S_VERSION_PATTERN.match(value):
        raise ValueError(
            f"'{value}' is not a pinned k3s release; use an exact tag such as v1.33.5+k3s1 "
            "(channels like 'stable' or 'latest' are not allowed)"
        )
    return value


def _exact_version(value: str) -> str:
    if not EXACT_VERSION_PATTERN.match(value):
        raise ValueError(f"'{value}' is not an exact version; pin it, e.g. 1.2.3 or v1.2.3")
    return value


def _dns_label(value: str) -> str:
    if not DNS_LABEL_PATTERN.match(value):
        raise ValueError(
            f"'{value}' is not a DNS label (lower-case letters, digits and '-', 1-63 characters, "
            "starting and ending with a letter or digit)"
        )
    return value


def _ssh_public_key(value: str) -> str:
    if not SSH_PUBLIC_KEY_PATTERN.match(value.strip()):
        raise ValueError(
            "is not an OpenSSH public key line ('ssh-ed25519 AAAA... comment'); never put a "
            "private key here"
        )
    return value.strip()


# RFC 1123 host name: dot-separated DNS labels, 253 characters at most.
HOST_NAME_PATTERN = re.compile(
    r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$"
)
# Kubernetes resource quantity (https://kubernetes.io/docs/reference/kubernetes-api/common-definitions/quantity/).
QUANTITY_PATTERN = re.compile(r"^\d+(\.\d+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?$")
# Ollama's OLLAMA_KEEP_ALIVE: a Go duration ("30m", "1h30m"), seconds, or -1 for forever
# (https://github.com/ollama/ollama/blob/main/envconfig/config.go, KeepAlive).
KEEP_ALIVE_PATTERN = re.compile(r"^(-1|\d+|(\d+(\.\d+)?(ns|us|ms|s|m|h))+)$")


def _looks_like_ipv4(value: str) -> bool:
    """All-digit last label: an IPv4 address (valid or not), never a host name (a top-level
    domain is never all digits, RFC 3696 section 2)."""
    return value.rsplit(".", 1)[-1].isdigit()


def _host_name(value: str) -> str:
    if _looks_like_ipv4(value):
        raise ValueError(f"'{value}' looks like an IPv4 address but is not a host name")
    if not HOST_NAME_PATTERN.match(value):
        raise ValueError(
            f"'{value}' is not a host name (lower-case DNS labels separated by dots, e.g. "
            "chat.lab.example)"
        )
    return value


def _address_or_host_name(value: str) -> str:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        if _looks_like_ipv4(value):
            raise ValueError(
                f"'{value}' looks like an IPv4 address but is not one (four numbers 0-255)"
            ) from None
        if not HOST_NAME_PATTERN.match(value):
            raise ValueError(
                f"'{value}' is neither an IP address nor a host name (e.g. 192.168.10.5 or "
                "nas.lab.example)"
            ) from None
    return value


def _pinned_image(value: str) -> str:
    """An exact tag, and where known the digest (``repo/image:1.2.3@sha256:<64 hex>``): the
    digest is checked for form here (components/kube/charts.py ImagePin)."""
    parse_image(value)
    return value


K3sVersion = Annotated[str, AfterValidator(_k3s_version)]
ExactVersion = Annotated[str, AfterValidator(_exact_version)]
DnsLabel = Annotated[str, AfterValidator(_dns_label)]
SshPublicKey = Annotated[str, AfterValidator(_ssh_public_key)]

# An Ed25519 public key blob in base64: "ssh-ed25519" and 32 key bytes, always 68 characters
# starting AAAAC3NzaC1lZDI1NTE5 (RFC 8709 section 4 wire format).
ED25519_BLOB = re.compile(r"^AAAAC3NzaC1lZDI1NTE5AAAAI[A-Za-z0-9+/]{43}$")


def _ed25519_host_key(value: str) -> str:
    parts = value.split()
    if len(parts) < 2 or parts[0] != "ssh-ed25519" or not ED25519_BLOB.match(parts[1]):
        raise ValueError(
            f"'{value[:40]}' is not an ssh-ed25519 public key ('ssh-ed25519 AAAAC3Nza...', the "
            "VM's /etc/ssh/ssh_host_ed25519_key.pub); only that type is pinned"
        )
    return value


Ed25519HostKey = Annotated[str, AfterValidator(_ed25519_host_key)]
# Role, user or account root ARNs only: a session ARN (sts::...:assumed-role/...) cannot be a
# principal of a role's trust policy.
IamPrincipalArn = Annotated[
    str, Field(pattern=r"^arn:aws[a-z-]*:iam::\d{12}:(root|user/[\w+=,.@/-]+|role/[\w+=,.@/-]+)$")
]
HostName = Annotated[str, AfterValidator(_host_name)]
AddressOrHostName = Annotated[str, AfterValidator(_address_or_host_name)]
PinnedImage = Annotated[str, AfterValidator(_pinned_image)]
ImageDigest = Annotated[str, Field(pattern=DIGEST_PATTERN.pattern)]
"""A registry manifest digest, ``sha256:<64 lowercase hex>``."""
Quantity = Annotated[str, Field(pattern=QUANTITY_PATTERN.pattern)]
Port = Annotated[int, Field(ge=1, le=65535)]


def _yaml_key(field_name: str) -> str:
    """snake_case field -> the camelCase YAML key, keeping binary units readable (diskGiB)."""
    first, *rest = field_name.split("_")
    camel = first + "".join(part[:1].upper() + part[1:] for part in rest)
    return re.sub(r"(Gi|Mi)b(?=[A-Z]|$)", r"\1B", camel)


class Model(BaseModel):
    """Base of every config model: camelCase keys as in the YAML, unknown keys rejected. A
    field's docstring is its description, which docs/reference.md prints (tools/gen_docs.py)."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        alias_generator=_yaml_key,
        populate_by_name=True,
        use_attribute_docstrings=True,
    )


def _admin_cidr(value: ipaddress.IPv4Network) -> ipaddress.IPv4Network:
    if value.prefixlen == 0:
        raise ValueError(
            f"'{value}' opens SSH to the whole internet; give your own public address "
            "as a /32 (or a small office range)"
        )
    return value


AdminCidr = Annotated[ipaddress.IPv4Network, AfterValidator(_admin_cidr)]
