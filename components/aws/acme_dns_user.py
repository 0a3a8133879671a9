"""The key the homelab's cert-manager answers ACME DNS-01 challenges with: an IAM user whose only
rights are TXT records named ``_acme-challenge.*`` in one Route 53 hosted zone.

Why a static key: cert-manager's Route 53 solver authenticates with a key from a Secret, an
assumed role or the AWS SDK's default chain (cert-manager/cert-manager
deploy/crds/cert-manager.io_clusterissuers.yaml@v1.19.1, dns01.route53); a Proxmox VM has no
instance role, and the homelab cluster has no OIDC issuer AWS could trust for web identity. The
key stays secret end to end (this stack's secret output, the homelab's secret StackReference
read, a Kubernetes Secret) and is replaced with ``pulumi up --replace`` on its access key.

What it can do (:func:`dns01_policy`, as cert-manager's Route 53 guide scopes it,
https://cert-manager.io/docs/configuration/acme/dns01/route53/): change record sets in that
zone only, only TXT records and only ``_acme-challenge.`` names (the
``route53:ChangeResourceRecordSetsRecordTypes`` / ``...NormalizedRecordNames`` condition keys,
https://docs.aws.amazon.com/Route53/latest/DeveloperGuide/specifying-rrset-conditions.html);
read a change's status (``GetChange``: changes have no zone in their ARN); and
``ListHostedZonesByName`` (no resource-level permissions exist for it)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

ROLE_TAG = "acme-dns01"


def partition(region: str) -> str:
    return "aws-us-gov" if region.startswith("us-gov-") else "aws"


def dns01_policy(hosted_zone_id: str, region: str) -> str:
    arn = f"arn:{partition(region)}:route53:::"
    document: dict[str, Any] = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ChallengeRecordsInTheZoneOnly",
                "Effect": "Allow",
                "Action": ["route53:ChangeResourceRecordSets"],
                "Resource": [f"{arn}hostedzone/{hosted_zone_id}"],
                "Condition": {
                    "ForAllValues:StringEquals": {
                        "route53:ChangeResourceRecordSetsRecordTypes": ["TXT"]
                    },
                    "ForAllValues:StringLike": {
                        "route53:ChangeResourceRecordSetsNormalizedRecordNames": [
                            "_acme-challenge.*"
                        ]
                    },
                },
            },
            {
                "Sid": "WaitForTheChange",
                "Effect": "Allow",
                "Action": ["route53:GetChange"],
                "Resource": [f"{arn}change/*"],
            },
            {
                "Sid": "FindTheZone",
                "Effect": "Allow",
                "Action": ["route53:ListHostedZonesByName"],
                "Resource": ["*"],
            },
        ],
    }
    return json.dumps(document, indent=2)


@dataclass(frozen=True)
class AcmeDnsUserArgs:
    hosted_zone_id: str
    region: str


class AcmeDnsUser(pulumi.ComponentResource):
    access_key_id: pulumi.Output[str]
    secret_access_key: pulumi.Output[str]
    """Secret."""

    def __init__(
        self, name: str, args: AcmeDnsUserArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("hybridgpu:aws:AcmeDnsUser", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        user = aws.iam.User(name, path="/hybridgpu/", tags={"Role": ROLE_TAG}, opts=child)
        aws.iam.UserPolicy(
            f"{name}-policy",
            user=user.name,
            policy=dns01_policy(args.hosted_zone_id, args.region),
            opts=child,
        )
        key = aws.iam.AccessKey(f"{name}-key", user=user.name, opts=child)
        self.access_key_id = key.id
        self.secret_access_key = pulumi.Output.secret(key.secret)
        self.register_outputs({"accessKeyId": self.access_key_id})
