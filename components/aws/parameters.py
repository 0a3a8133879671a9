"""SecureParameters: secrets (and the files nodes pull at boot) as SSM Parameter Store
SecureStrings under one path, so an IAM policy can grant exactly that path.

Why SSM and not user data: EC2 user data is readable by anyone with
``ec2:DescribeInstanceAttribute`` and, through IMDS, by every process on the instance; a
SecureString's value is readable only by principals allowed ``ssm:GetParameter*`` on it, and is
encrypted at rest with the account's ``aws/ssm`` KMS key (no key to manage, no cost). Standard
parameters are free and hold up to 4 KB; larger values use the advanced tier (8 KB, billed
monthly per parameter: https://aws.amazon.com/systems-manager/pricing/).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

STANDARD_TIER_BYTES = 4096
ADVANCED_TIER_BYTES = 8192
# SSM parameter names: letters, digits and . - _ / (https://docs.aws.amazon.com/systems-manager/
# latest/userguide/sysman-parameter-name-constraints.html).
NAME_PATTERN = re.compile(r"^/[A-Za-z0-9_.\-/]+$")


def tier_for(value: str) -> str:
    size = len(value.encode())
    if size > ADVANCED_TIER_BYTES:
        raise ValueError(
            f"a parameter value of {size} bytes exceeds SSM's {ADVANCED_TIER_BYTES}-byte limit"
        )
    return "Standard" if size <= STANDARD_TIER_BYTES else "Advanced"


@dataclass(frozen=True)
class SecureParametersArgs:
    path: str
    """Common prefix, e.g. ``/hybridgpu/aws-gpu/gpu-worker``."""
    values: Mapping[str, pulumi.Input[str]]
    """Name below ``path`` -> value (secret or not, every one is stored encrypted)."""
    role: str
    """``Role`` tag."""
    description: str = ""

    def __post_init__(self) -> None:
        for name in self.values:
            full = f"{self.path}/{name}"
            if not NAME_PATTERN.match(full) or "//" in full:
                raise ValueError(f"'{full}' is not a valid SSM parameter name")


class SecureParameters(pulumi.ComponentResource):
    names: dict[str, pulumi.Output[str]]
    """Name below the path -> full parameter name."""
    parameters: dict[str, aws.ssm.Parameter]
    path: str

    def __init__(
        self, name: str, args: SecureParametersArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("hybridgpu:aws:SecureParameters", name, None, opts)
        self.path = args.path
        self.parameters = {}
        for key, value in args.values.items():
            secret_value = pulumi.Output.secret(value)
            self.parameters[key] = aws.ssm.Parameter(
                f"{name}-{key.replace('/', '-').replace('.', '-')}",
                name=f"{args.path}/{key}",
                type="SecureString",
                value=secret_value,
                tier=secret_value.apply(tier_for),
                description=args.description or None,
                tags={"Role": args.role},
                opts=pulumi.ResourceOptions(parent=self),
            )
        self.names = {key: p.name for key, p in self.parameters.items()}
        self.register_outputs({"names": self.names})


def parameter_arn_pattern(region: str, account_id: str, path: str) -> str:
    """IAM resource ARN matching every parameter below ``path``."""
    return f"arn:aws:ssm:{region}:{account_id}:parameter{path}/*"
