"""Short-lived AWS credentials for the homelab's wake gate: IAM Roles Anywhere.

When the whole AWS side sleeps (``gpuWaker.sleepAfterMinutes``), nothing on AWS is running to
start it again, so the homelab does: its wake gate (gpu-waker in gate mode on a homelab server)
proves itself with an X.509 client certificate issued by a CA this stack owns, and Roles Anywhere
hands it one-hour credentials of a role that may only start the two nodes
(https://docs.aws.amazon.com/rolesanywhere/latest/userguide/introduction.html). No access key
exists anywhere.

- The trust anchor holds the CA certificate (``CERTIFICATE_BUNDLE``). Its ``source`` is updated
  in place, never replaced (hashicorp/terraform-provider-aws
  internal/service/rolesanywhere/trust_anchor.go: no ForceNew, Update calls UpdateTrustAnchor
  with the new source), so a renewed CA keeps the anchor's ARN that the role's trust names.
- The profile has no input that forces a replacement either (internal/service/rolesanywhere/
  profile.go: no ForceNew; Update calls UpdateProfile, Enable/DisableProfile), so its ARN, which
  the gate is configured with, stays. Both were read at stored commits of the provider's main
  branch, not at the tag pulumi-aws 7.51.1 bridges.
- The role trusts Roles Anywhere only through this trust anchor (``aws:SourceArn``) and only for
  a certificate whose subject CN is the gate's (``aws:PrincipalTag/x509Subject/CN``, the session
  tags Roles Anywhere sets from the certificate,
  https://docs.aws.amazon.com/rolesanywhere/latest/userguide/trust-model.html#trust-policy).
- Its one inline policy: StartInstances on the two nodes' ARNs; DescribeInstances (no
  resource-level permissions, Resource "*"; it reveals no user data). Nothing stops anything:
  the nodes stop themselves (the control node's own role) or are stopped by gpu-waker on AWS.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

ROLES_ANYWHERE_SERVICE = "rolesanywhere.amazonaws.com"
# One hour: Roles Anywhere's default session; the library refreshes before expiry
# (https://docs.aws.amazon.com/rolesanywhere/latest/userguide/authentication-create-session.html:
# durationSeconds 900..43200, default 3600).
SESSION_SECONDS = 3600
ROLE_TAG = "wake-gate"


def trust_policy(trust_anchor_arn: str, common_name: str) -> str:
    if ":trust-anchor/" not in trust_anchor_arn:
        raise ValueError(f"'{trust_anchor_arn}' is not a Roles Anywhere trust anchor ARN")
    if not common_name or any(c in common_name for c in '*?"\\'):
        raise ValueError(f"'{common_name}' is not a plain certificate common name")
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "WakeGateCertificate",
                    "Effect": "Allow",
                    "Principal": {"Service": ROLES_ANYWHERE_SERVICE},
                    "Action": ["sts:AssumeRole", "sts:TagSession", "sts:SetSourceIdentity"],
                    "Condition": {
                        "ArnEquals": {"aws:SourceArn": trust_anchor_arn},
                        "StringEquals": {"aws:PrincipalTag/x509Subject/CN": common_name},
                    },
                }
            ],
        },
        indent=2,
        sort_keys=True,
    )


def start_policy(instance_arns: Sequence[str]) -> str:
    for arn in instance_arns:
        if not arn.startswith("arn:") or ":instance/i-" not in arn:
            raise ValueError(f"'{arn}' is not the ARN of one EC2 instance")
    if not instance_arns:
        raise ValueError("no instance to start")
    statements: list[dict[str, Any]] = [
        {
            "Sid": "ReadNodeState",
            "Effect": "Allow",
            "Action": "ec2:DescribeInstances",
            "Resource": "*",
        },
        {
            "Sid": "StartNodes",
            "Effect": "Allow",
            "Action": "ec2:StartInstances",
            "Resource": sorted(instance_arns),
        },
    ]
    return json.dumps({"Version": "2012-10-17", "Statement": statements}, indent=2, sort_keys=True)


@dataclass(frozen=True)
class WakeAccessArgs:
    ca_cert_pem: pulumi.Input[str]
    """The CA that issues the gate's certificate (PEM)."""
    instance_arns: Sequence[pulumi.Input[str]]
    """What the gate may start: the control node, then the GPU worker."""
    common_name: str
    """The subject CN of the gate's certificate; no other certificate of the CA gets the role."""
    name_prefix: str


class WakeAccess(pulumi.ComponentResource):
    trust_anchor_arn: pulumi.Output[str]
    profile_arn: pulumi.Output[str]
    role_arn: pulumi.Output[str]

    def __init__(
        self, name: str, args: WakeAccessArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("hybridgpu:aws:WakeAccess", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        anchor = aws.rolesanywhere.TrustAnchor(
            f"{name}-trust-anchor",
            name=f"{args.name_prefix}wake-gate",
            enabled=True,
            source=aws.rolesanywhere.TrustAnchorSourceArgs(
                source_type="CERTIFICATE_BUNDLE",
                source_data=aws.rolesanywhere.TrustAnchorSourceSourceDataArgs(
                    x509_certificate_data=args.ca_cert_pem
                ),
            ),
            tags={"Role": ROLE_TAG},
            opts=child,
        )
        common_name = args.common_name
        role = aws.iam.Role(
            f"{name}-role",
            description="hybridgpu wake gate (IAM Roles Anywhere): starts the AWS nodes",
            assume_role_policy=anchor.arn.apply(lambda arn: trust_policy(arn, common_name)),
            max_session_duration=SESSION_SECONDS,
            tags={"Role": ROLE_TAG},
            opts=child,
        )
        aws.iam.RolePolicy(
            f"{name}-start",
            role=role.id,
            policy=pulumi.Output.all(*args.instance_arns).apply(
                lambda arns: start_policy([str(a) for a in arns])
            ),
            opts=child,
        )
        profile = aws.rolesanywhere.Profile(
            f"{name}-profile",
            name=f"{args.name_prefix}wake-gate",
            enabled=True,
            role_arns=[role.arn],
            duration_seconds=SESSION_SECONDS,
            tags={"Role": ROLE_TAG},
            opts=child,
        )
        self.trust_anchor_arn = anchor.arn
        self.profile_arn = profile.arn
        self.role_arn = role.arn
        self.register_outputs(
            {
                "trustAnchorArn": anchor.arn,
                "profileArn": profile.arn,
                "roleArn": role.arn,
            }
        )
