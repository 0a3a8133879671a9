"""Model integrity on the AWS side: only the uploader role writes the bucket, the GPU worker's role
reads it only through the VPC's S3 gateway endpoint.

The recorded bucket policy is evaluated for concrete requests by a deliberately small evaluator of
the subset of the IAM policy language it uses (Effect, Principal "*", Action, Resource/NotResource,
and the Bool/ArnEquals/ArnNotEquals/StringNotEquals conditions), following AWS's evaluation logic
for a bucket policy: an explicit Deny that matches wins over every Allow
(https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html).
Anything outside that subset fails the test instead of being guessed. The same document also goes
through moto's policy grammar validator and S3 (tests/test_aws_renderers.py).
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass
from typing import Any

import pytest
from moto.iam.policy_validation import IAMPolicyDocumentValidator

from components.aws.model_bucket_policy import bucket_policy
from components.aws.model_uploader import trust_policy, upload_policy
from tools.offline import StackRun

POLICY = "aws:s3/bucketPolicy:BucketPolicy"
ROLE = "aws:iam/role:Role"
ACCOUNT = "123456789012"
ADMIN = f"arn:aws:iam::{ACCOUNT}:role/Administrator"
CI_USER = f"arn:aws:iam::{ACCOUNT}:user/ci"


@dataclass(frozen=True)
class Request:
    principal: str
    """aws:PrincipalArn (for a role session: the role's ARN)."""
    action: str
    resource: str
    source_vpce: str | None = None
    secure: bool = True


def _list(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _condition_holds(operator: str, key: str, wanted: Any, request: Request) -> bool:
    actual: str | None = {
        "aws:PrincipalArn": request.principal,
        "aws:sourceVpce": request.source_vpce,
        "aws:SecureTransport": "true" if request.secure else "false",
    }[key]
    values = _list(wanted)
    if operator in ("ArnEquals", "StringEquals", "Bool"):
        return actual is not None and any(fnmatch.fnmatchcase(actual, v) for v in values)
    if operator in ("ArnNotEquals", "StringNotEquals"):
        # A missing key makes ...NotEquals true (no value equals the listed ones).
        return actual is None or not any(fnmatch.fnmatchcase(actual, v) for v in values)
    raise AssertionError(f"condition operator {operator} is outside what this evaluator knows")


def _matches(statement: dict[str, Any], request: Request) -> bool:
    assert statement["Principal"] == "*", "the evaluator knows Principal '*' only"
    if not any(fnmatch.fnmatchcase(request.action, a) for a in _list(statement["Action"])):
        return False
    if "Resource" in statement:
        in_scope = any(
            fnmatch.fnmatchcase(request.resource, r) for r in _list(statement["Resource"])
        )
    else:
        in_scope = not any(
            fnmatch.fnmatchcase(request.resource, r) for r in _list(statement["NotResource"])
        )
    if not in_scope:
        return False
    return all(
        _condition_holds(operator, key, wanted, request)
        for operator, pairs in statement.get("Condition", {}).items()
        for key, wanted in pairs.items()
    )


def denied(document: dict[str, Any], request: Request) -> bool:
    """Whether the bucket policy explicitly denies the request (then no IAM allow helps)."""
    for statement in document["Statement"]:
        assert statement["Effect"] in ("Allow", "Deny")
        if statement["Effect"] == "Deny" and _matches(statement, request):
            return True
    return False


def _recorded(run: StackRun) -> tuple[dict[str, Any], str, str, str]:
    """The bucket policy as recorded, the uploader role's ARN (stack output), and the worker
    role and endpoint the read statement names (checked against the run's own resources)."""
    # The model bucket's (the backup bucket has its own, tests/test_backups.py).
    policy = run.one(POLICY, "models-tls-only")
    document = json.loads(policy.plain_inputs["policy"])
    (read,) = [s for s in document["Statement"] if s["Sid"] == "NodesReadOnlyThroughTheVpcEndpoint"]
    (worker,) = read["Condition"]["ArnEquals"]["aws:PrincipalArn"]
    assert worker.startswith(f"arn:aws:iam::{ACCOUNT}:role/gpu-worker-role-")
    vpce = read["Condition"]["StringNotEquals"]["aws:sourceVpce"]
    (endpoint,) = run.by_type("aws:ec2/vpcEndpoint:VpcEndpoint")
    assert endpoint.urn in policy.property_dependencies["policy"]
    return document, run.exports["modelUploaderRoleArn"], worker, vpce


def test_only_the_uploader_role_can_write_or_delete_models(aws_gpu_run: StackRun) -> None:
    document, uploader, worker, _ = _recorded(aws_gpu_run)
    bucket = aws_gpu_run.exports["modelBucketArn"]
    blob = f"{bucket}/ollama/blobs/sha256-{'0' * 64}"
    manifest = f"{bucket}/ollama/manifests/registry.ollama.ai/library/tiny/1b"
    control = next(
        s for s in (r.name for r in aws_gpu_run.by_type(ROLE)) if s.startswith("control-node-role")
    )
    others = [
        worker,
        f"arn:aws:iam::{ACCOUNT}:role/{control}",
        ADMIN,
        CI_USER,
        f"arn:aws:iam::{ACCOUNT}:root",
        "arn:aws:iam::999999999999:role/model-uploader",  # same name, other account
    ]
    writes = ("s3:PutObject", "s3:DeleteObject", "s3:DeleteObjectVersion")
    for key in (blob, manifest):
        for action in writes:
            assert not denied(document, Request(uploader, action, key)), (action, key)
            for principal in others:
                assert denied(document, Request(principal, action, key)), (principal, action)
    # The uploader reads and lists from anywhere (an operator's laptop); never over plain HTTP.
    assert not denied(document, Request(uploader, "s3:GetObject", blob))
    assert denied(document, Request(uploader, "s3:PutObject", blob, secure=False))
    # Figures for the report: how many principals tried, how many could write.
    can_write = [
        p for p in [uploader, *others] if not denied(document, Request(p, writes[0], blob))
    ]
    assert can_write == [uploader]


def test_the_stack_can_still_keep_its_directory_markers(aws_gpu_run: StackRun) -> None:
    """Pulumi (any deploying principal) creates and deletes the empty ``<prefix>/`` markers."""
    document, *_ = _recorded(aws_gpu_run)
    bucket = aws_gpu_run.exports["modelBucketArn"]
    markers = [
        r.plain_inputs["key"] for r in aws_gpu_run.by_type("aws:s3/bucketObjectv2:BucketObjectv2")
    ]
    assert markers
    for key in markers:
        for action in ("s3:PutObject", "s3:DeleteObject"):
            assert not denied(document, Request(ADMIN, action, f"{bucket}/{key}"))
    # ... and a blob key right under a marker is not one of them.
    assert denied(document, Request(ADMIN, "s3:PutObject", f"{bucket}/{markers[0]}x"))


def test_the_worker_reads_only_through_the_vpc_endpoint(aws_gpu_run: StackRun) -> None:
    document, uploader, worker, vpce = _recorded(aws_gpu_run)
    bucket = aws_gpu_run.exports["modelBucketArn"]
    blob = f"{bucket}/ollama/blobs/sha256-{'0' * 64}"
    for action, resource in (("s3:GetObject", blob), ("s3:ListBucket", bucket)):
        assert not denied(document, Request(worker, action, resource, source_vpce=vpce))
        assert denied(document, Request(worker, action, resource))  # the internet
        assert denied(document, Request(worker, action, resource, source_vpce="vpce-elsewhere"))
        assert not denied(document, Request(uploader, action, resource))


def test_the_gateway_endpoint_serves_the_nodes_route_table(aws_gpu_run: StackRun) -> None:
    (endpoint,) = aws_gpu_run.by_type("aws:ec2/vpcEndpoint:VpcEndpoint")
    inputs = endpoint.plain_inputs
    assert inputs["vpcEndpointType"] == "Gateway"
    assert inputs["serviceName"] == f"com.amazonaws.{aws_gpu_run.exports['region']}.s3"
    (table,) = aws_gpu_run.by_type("aws:ec2/routeTable:RouteTable")
    (association,) = aws_gpu_run.by_type("aws:ec2/routeTableAssociation:RouteTableAssociation")
    assert table.urn in endpoint.property_dependencies["routeTableIds"]
    assert table.urn in association.property_dependencies["routeTableId"]
    assert "policy" not in inputs, "default (full) endpoint policy: ECR layers come from S3 too"


def test_the_uploader_role_trust_and_permissions(aws_gpu_run: StackRun) -> None:
    role = aws_gpu_run.one(ROLE, "model-uploader-role")
    trust = json.loads(role.plain_inputs["assumeRolePolicy"])
    (statement,) = trust["Statement"]
    assert statement["Principal"] == {"AWS": [f"arn:aws:iam::{ACCOUNT}:root"]}
    (write,) = [
        r
        for r in aws_gpu_run.by_type("aws:iam/rolePolicy:RolePolicy")
        if r.name == "model-uploader-write"
    ]
    document = json.loads(write.plain_inputs["policy"])
    bucket = aws_gpu_run.exports["modelBucketArn"]
    resources = {json.dumps(s["Resource"]) for s in document["Statement"]}
    assert resources == {json.dumps(bucket), json.dumps(f"{bucket}/ollama/*")}
    IAMPolicyDocumentValidator(write.plain_inputs["policy"]).validate()


def test_configured_uploader_principals_are_the_only_ones_trusted(
    valid_fixture_runs: dict[str, StackRun],
) -> None:
    run = valid_fixture_runs["aws-uploader-principals"]
    trust = json.loads(run.one(ROLE, "model-uploader-role").plain_inputs["assumeRolePolicy"])
    assert trust["Statement"][0]["Principal"] == {
        "AWS": [
            "arn:aws:iam::123456789012:role/ModelPublisher",
            "arn:aws:iam::123456789012:user/alice",
        ]
    }


def test_policy_renderers_refuse_what_they_cannot_express() -> None:
    bucket = "arn:aws:s3:::models"
    with pytest.raises(ValueError, match="role ARN"):
        bucket_policy(bucket, uploader_role_arn="arn:aws:iam::1:user/alice")
    with pytest.raises(ValueError, match="VPC endpoint"):
        bucket_policy(
            bucket,
            uploader_role_arn="arn:aws:iam::123456789012:role/u",
            reader_role_arns=["arn:aws:iam::123456789012:role/r"],
        )
    with pytest.raises(ValueError, match="not an IAM role, user or account root"):
        trust_policy(["arn:aws:sts::123456789012:assumed-role/Admin/alice"])
    with pytest.raises(ValueError, match="at least one"):
        trust_policy([])
    with pytest.raises(ValueError, match="folder"):
        upload_policy(bucket, "ollama")
