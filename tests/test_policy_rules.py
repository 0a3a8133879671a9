"""The pack's rules on shapes today's stacks do not have (other images, charts, launch templates,
rule styles, preview unknowns): the rules follow the rule, not the current resources."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hybridgpu_policy import aws_rules, kube_rules, s3_rules, secret_rules
from hybridgpu_policy.resources import Resource
from hybridgpu_policy.values import (
    SECRET_SIG,
    SIG_KEY,
    chart_version_problem,
    image_pin_problem,
)

UNKNOWN_STRING = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
UNKNOWN_BOOL = "1c4a061d-8072-4f0a-a4cb-0ff528b18fe7"
DIGEST = "sha256:" + "ab" * 32


def secret(value: Any) -> dict[str, Any]:
    return {SIG_KEY: SECRET_SIG, "value": value}


def resource(typ: str, props: dict[str, Any], name: str = "r", **kw: Any) -> Resource:
    return Resource(type=typ, name=name, urn=f"urn:pulumi:s::p::{typ}::{name}", props=props, **kw)


@pytest.mark.parametrize(
    ("reference", "problem"),
    [
        ("docker.io/ollama/ollama:0.32.15", None),
        (f"docker.io/ollama/ollama:0.32.15@{DIGEST}", None),
        (f"ghcr.io/x/y@{DIGEST}", None),
        ("registry.lab:5000/team/app:1.2", None),
        ("registry.lab:5000/team/app", "no tag or digest (pulls :latest)"),
        ("ollama/ollama", "no tag or digest (pulls :latest)"),
        ("ollama/ollama:latest", "tag 'latest'"),
        ("ollama/ollama:LATEST", "tag 'latest'"),
        ("ollama/ollama@sha256:short", "malformed digest 'sha256:short'"),
    ],
)
def test_image_references(reference: str, problem: str | None) -> None:
    assert image_pin_problem(reference) == problem


@pytest.mark.parametrize(
    ("chart", "version", "pinned"),
    [
        ("liqo", "v1.2.0", True),
        ("oci://public.ecr.aws/aws-ec2/helm/aws-node-termination-handler", "0.27.6", True),
        ("gpu-operator", "v26.7.0-rc.1", True),
        ("https://charts.example/app-1.4.2.tgz", None, True),
        ("./charts/local", None, True),
        ("liqo", None, False),
        ("liqo", "", False),
        ("liqo", "latest", False),
        ("liqo", "^1.2.0", False),
        ("liqo", "~1.2", False),
        ("liqo", ">=1.0.0", False),
        ("liqo", "1.x", False),
        ("liqo", "1.2", False),
    ],
)
def test_chart_versions(chart: str, version: str | None, pinned: bool) -> None:
    assert (chart_version_problem(chart, version) is None) == pinned


def test_k3s_helm_chart_crd_and_v4_chart_are_checked() -> None:
    crd = resource(kube_rules.K3S_HELM_CHART, {"spec": {"chart": "traefik", "repo": "https://x"}})
    v4 = resource(kube_rules.HELM_CHART_V4, {"chart": "metallb", "version": "0.16.1"})
    assert len(list(kube_rules.pinned_helm_charts(crd, {}))) == 1
    assert list(kube_rules.pinned_helm_charts(v4, {})) == []


def test_images_in_any_pod_template_and_in_helm_values() -> None:
    cron = resource(
        "kubernetes:batch/v1:CronJob",
        {
            "spec": {
                "jobTemplate": {
                    "spec": {
                        "template": {
                            "spec": {
                                "initContainers": [{"name": "a", "image": "busybox"}],
                                "containers": [{"name": "b", "image": f"x/y:1@{DIGEST}"}],
                            }
                        }
                    }
                }
            }
        },
    )
    (message,) = kube_rules.pinned_images(cron, {})
    assert "initContainers[0] image 'busybox' has no tag or digest" in message
    release = resource(
        kube_rules.HELM_RELEASE,
        {
            "values": secret(
                {
                    "image": {"repository": "ollama/ollama", "tag": "latest"},
                    "sidecar": {"image": "nginx:latest"},
                    "other": {"image": {"repository": "defaulted"}},  # chart default: pinned
                }
            )
        },
    )
    found = list(kube_rules.pinned_images(release, {}))
    assert len(found) == 2
    assert "image.tag = 'latest'" in found[0]
    assert "sidecar.image = 'nginx:latest'" in found[1]


def test_preview_unknowns_are_not_violations() -> None:
    unknown_instance = resource(
        aws_rules.INSTANCE,
        {
            "metadataOptions": {"httpTokens": UNKNOWN_STRING},
            "rootBlockDevice": {"encrypted": UNKNOWN_BOOL},
            "instanceType": UNKNOWN_STRING,
            "tags": UNKNOWN_STRING,
        },
        name="gpu-worker",
    )
    for check in (
        aws_rules.imdsv2_required,
        aws_rules.encrypted_ebs,
        aws_rules.nvidia_gpu_workers,
        aws_rules.cost_tags,
    ):
        assert list(check(unknown_instance, {})) == [], check.__name__
    pod = resource("kubernetes:core/v1:Pod", {"spec": {"containers": [{"image": UNKNOWN_STRING}]}})
    assert list(kube_rules.pinned_images(pod, {})) == []


def test_launch_templates_need_imdsv2_and_encrypted_volumes() -> None:
    template = resource(
        aws_rules.LAUNCH_TEMPLATE,
        {
            "metadataOptions": {"httpTokens": "optional"},
            "blockDeviceMappings": [
                {"deviceName": "/dev/xvda", "ebs": {"encrypted": "true"}},
                {"deviceName": "/dev/sdf", "ebs": {"encrypted": "false"}},
            ],
            "instanceType": "g6.xlarge",
        },
        name="gpu-template",
    )
    assert len(list(aws_rules.imdsv2_required(template, {}))) == 1
    (ebs,) = aws_rules.encrypted_ebs(template, {})
    assert "/dev/sdf" in ebs
    assert list(aws_rules.nvidia_gpu_workers(template, {})) == []
    assert list(aws_rules.nvidia_gpu_workers(template, {"allowedFamilies": ["g5"]}))


@pytest.mark.parametrize(
    ("typ", "props", "violations"),
    [
        (
            aws_rules.SECURITY_GROUP,
            {
                "ingress": [
                    {"protocol": "-1", "fromPort": 0, "toPort": 0, "cidrBlocks": ["0.0.0.0/0"]}
                ]
            },
            1,
        ),
        (
            aws_rules.SECURITY_GROUP,
            {
                "ingress": [
                    {"protocol": "6", "fromPort": 80, "toPort": 80, "ipv6CidrBlocks": ["::/0"]}
                ]
            },
            1,
        ),
        (
            aws_rules.SECURITY_GROUP_RULE,
            {
                "type": "ingress",
                "protocol": "tcp",
                "fromPort": 22,
                "toPort": 22,
                "cidrBlocks": ["0.0.0.0/0"],
            },
            1,
        ),
        (
            aws_rules.SECURITY_GROUP_RULE,
            {
                "type": "egress",
                "protocol": "tcp",
                "fromPort": 0,
                "toPort": 0,
                "cidrBlocks": ["0.0.0.0/0"],
            },
            0,
        ),
        (
            aws_rules.VPC_INGRESS_RULE,
            {"ipProtocol": "udp", "fromPort": 4242, "toPort": 4242, "cidrIpv4": "0.0.0.0/0"},
            0,
        ),
        (
            aws_rules.VPC_INGRESS_RULE,
            {"ipProtocol": "tcp", "fromPort": 443, "toPort": 443, "cidrIpv6": "::/0"},
            1,
        ),
        (
            aws_rules.VPC_INGRESS_RULE,
            {"ipProtocol": "tcp", "fromPort": 22, "toPort": 22, "cidrIpv4": "198.51.100.0/24"},
            0,
        ),
    ],
)
def test_world_open_tcp(typ: str, props: dict[str, Any], violations: int) -> None:
    assert len(list(aws_rules.no_world_open_tcp(resource(typ, props), {}))) == violations


def test_autoscaling_group_tags_are_its_own() -> None:
    provider = {"defaultTags": json.dumps({"tags": {"Project": "p", "Stack": "s"}})}
    group = resource(
        "aws:autoscaling/group:Group",
        {"tags": [{"key": "Project", "value": "p", "propagateAtLaunch": True}]},
        provider_props=provider,
    )
    (message,) = aws_rules.cost_tags(group, {})
    assert "Stack" in message
    assert list(aws_rules.cost_tags(group, {"requiredTags": ["Project"]})) == []


def _bucket_stack(policy_document: Any) -> list[Resource]:
    bucket = resource("aws:s3/bucket:Bucket", {"bucketPrefix": "m-"}, name="models")
    deps = {"bucket": (bucket.urn,)}
    return [
        bucket,
        resource(
            s3_rules.PUBLIC_ACCESS_BLOCK,
            dict.fromkeys(s3_rules.PUBLIC_ACCESS_FLAGS, True),
            property_dependencies=deps,
        ),
        resource(
            next(iter(s3_rules.ENCRYPTION)),
            {"rules": [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "aws:kms"}}]},
            property_dependencies=deps,
        ),
        resource(s3_rules.BUCKET_POLICY, {"policy": policy_document}, property_dependencies=deps),
    ]


def _deny_http(**overrides: Any) -> dict[str, Any]:
    statement = {
        "Effect": "Deny",
        "Principal": {"AWS": "*"},
        "Action": "*",
        "Resource": ["arn:aws:s3:::b", "arn:aws:s3:::b/*"],
        "Condition": {"Bool": {"aws:SecureTransport": ["false"]}},
    }
    return {"Version": "2012-10-17", "Statement": [{**statement, **overrides}]}


@pytest.mark.parametrize(
    ("document", "tls_violations"),
    [
        (json.dumps(_deny_http()), 0),
        (_deny_http(), 0),
        (UNKNOWN_STRING, 0),  # preview: the ARN in the policy is not known yet
        (json.dumps(_deny_http(Effect="Allow")), 1),
        (json.dumps(_deny_http(Action="s3:GetObject")), 1),
        (json.dumps(_deny_http(Condition={})), 1),
    ],
)
def test_tls_only_bucket_policy_styles(document: Any, tls_violations: int) -> None:
    found = [m for _, m in s3_rules.private_encrypted_tls_only_buckets(_bucket_stack(document), {})]
    assert len([m for m in found if "plain-HTTP" in m]) == tls_violations, found
    assert len(found) == tls_violations


def test_public_acl_makes_a_bucket_public() -> None:
    stack = _bucket_stack(json.dumps(_deny_http()))
    acl = resource(
        "aws:s3/bucketAclV2:BucketAclV2",
        {"acl": "public-read"},
        property_dependencies={"bucket": (stack[0].urn,)},
    )
    (found,) = s3_rules.private_encrypted_tls_only_buckets([*stack, acl], {})
    assert "ACL 'public-read'" in found[1]


@pytest.mark.parametrize(
    ("key", "secret_name"),
    [
        ("K3S_TOKEN", True),
        ("KUBECONFIG", True),
        ("HYBRIDGPU_PROVIDER_KUBECONFIG", True),
        ("AWS_SECRET_ACCESS_KEY", True),
        ("client_secret", True),
        ("adminPassword", True),
        ("existingSecret", False),
        ("secretName", False),
        ("tlsSecret", False),  # a Helm value naming a Kubernetes Secret
        ("secret", True),
        ("tokenFile", False),
        ("AWS_ACCESS_KEY_ID", False),
        ("LIQO_VERSION", False),
    ],
)
def test_secret_names(key: str, secret_name: bool) -> None:
    assert secret_rules.names_a_secret(key) == secret_name


def test_an_environment_variable_ending_in_secret_is_one() -> None:
    assert secret_rules.names_a_secret("DB_SECRET", environment=True)
    assert not secret_rules.names_a_secret("DB_SECRET")
    assert not secret_rules.names_a_secret("TLS_SECRET_NAME", environment=True)


def test_commands_keep_credentials_secret() -> None:
    pem = "-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----\n"
    plain_command = resource(
        "command:remote:Command",
        {
            "connection": {"host": "h", "privateKey": pem},
            "environment": {"K3S_TOKEN": "t", "VERSION": "v1", "BLOB": "K3S_TOKEN=abc"},
            "stdin": "NEBULA_KEY_PASSWORD=hunter2\n",
        },
    )
    found = list(secret_rules.secrets_are_pulumi_secrets(plain_command, {}))
    assert len(found) == 4, found
    assert any("connection.privateKey" in m for m in found)
    assert any("variable K3S_TOKEN" in m for m in found)
    assert any("variable BLOB" in m for m in found)
    assert any("stdin" in m for m in found)
    secret_command = resource(
        "command:remote:Command",
        {
            "connection": secret({"host": "h", "privateKey": pem}),
            "environment": {"K3S_TOKEN": secret("t"), "VERSION": "v1", "BLOB": secret("x")},
            "stdin": secret("NEBULA_KEY_PASSWORD=hunter2\n"),
        },
    )
    assert list(secret_rules.secrets_are_pulumi_secrets(secret_command, {})) == []
    script_stdin = resource("command:local:Command", {"stdin": 'echo "$TOKEN"\n'})
    assert list(secret_rules.secrets_are_pulumi_secrets(script_stdin, {})) == []
