"""S3 buckets are private (all four public-access blocks), encrypted and TLS-only.

A whole-stack check: in pulumi-aws 7 these are separate resources attached to the bucket through
their ``bucket`` input, so the rule pairs them with their bucket by property dependency (the
engine's record that an input was computed from the bucket), or by the bucket's name.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from hybridgpu_policy.resources import Resource
from hybridgpu_policy.values import Unknown, get, is_unknown, known, plain, truthy

BUCKETS = frozenset({"aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2"})
PUBLIC_ACCESS_BLOCK = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
ENCRYPTION = frozenset(
    {
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
        "aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2",
    }
)
BUCKET_POLICY = "aws:s3/bucketPolicy:BucketPolicy"
BUCKET_ACLS = frozenset({"aws:s3/bucketAcl:BucketAcl", "aws:s3/bucketAclV2:BucketAclV2"})
PUBLIC_ACCESS_FLAGS = (
    "blockPublicAcls",
    "blockPublicPolicy",
    "ignorePublicAcls",
    "restrictPublicBuckets",
)
SSE_ALGORITHMS = frozenset({"AES256", "aws:kms", "aws:kms:dsse"})
PUBLIC_CANNED_ACLS = frozenset({"public-read", "public-read-write", "authenticated-read"})


def _attached(bucket: Resource, resource: Resource) -> bool:
    if bucket.urn in resource.property_dependencies.get("bucket", ()):
        return True
    target = plain(get(resource.props, "bucket"))
    name = plain(get(bucket.props, "bucket"))
    return isinstance(target, str) and not is_unknown(target) and target == name


def _public_access_problem(blocks: list[Resource]) -> str | None:
    if not blocks:
        return "has no BucketPublicAccessBlock"
    off: list[str] = []
    for block in blocks:
        try:
            off = [flag for flag in PUBLIC_ACCESS_FLAGS if not truthy(get(block.props, flag))]
        except Unknown:
            return None
        if not off:
            return None
    return f"has public-access blocks off ({', '.join(off)})"


def _encrypted(bucket: Resource, configs: list[Resource]) -> bool:
    rules: list[Any] = []
    try:
        for config in configs:
            rules += known(get(config.props, "rules")) or []
        inline = known(get(bucket.props, "serverSideEncryptionConfiguration.rule"))
    except Unknown:
        return True
    if isinstance(inline, Mapping):
        rules.append(inline)
    return any(
        get(rule, "applyServerSideEncryptionByDefault.sseAlgorithm") in SSE_ALGORITHMS
        for rule in rules
        if isinstance(rule, Mapping)
    )


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _denies_plain_http(statement: Mapping[str, Any]) -> bool:
    if statement.get("Effect") != "Deny":
        return False
    principal = statement.get("Principal")
    if principal != "*" and not (
        isinstance(principal, Mapping) and "*" in _as_list(principal.get("AWS"))
    ):
        return False
    if not {"s3:*", "*"} & set(_as_list(statement.get("Action"))):
        return False
    secure = get(statement, "Condition.Bool") or {}
    flags = [str(v).lower() for v in _as_list(secure.get("aws:SecureTransport"))]
    return "false" in flags


def _tls_only(policies: list[Resource]) -> bool:
    for bucket_policy in policies:
        try:
            document = known(get(bucket_policy.props, "policy"))
        except Unknown:
            return True
        if isinstance(document, str):
            try:
                document = json.loads(document)
            except ValueError:
                continue
        statements = get(document, "Statement") if isinstance(document, Mapping) else None
        if any(isinstance(s, Mapping) and _denies_plain_http(s) for s in _as_list(statements)):
            return True
    return False


def private_encrypted_tls_only_buckets(
    resources: Sequence[Resource], _config: Mapping[str, Any]
) -> Iterator[tuple[str, str]]:
    for bucket in (r for r in resources if r.type in BUCKETS):
        attached = [r for r in resources if r.type not in BUCKETS and _attached(bucket, r)]
        label = f"S3 bucket '{bucket.name}'"
        problem = _public_access_problem([r for r in attached if r.type == PUBLIC_ACCESS_BLOCK])
        if problem:
            yield (
                bucket.urn,
                (
                    f"{label} {problem}: model weights could be made public by a policy or ACL. "
                    "Fix: aws.s3.BucketPublicAccessBlock(bucket=<bucket>.id) with "
                    "block_public_acls, block_public_policy, ignore_public_acls and "
                    "restrict_public_buckets all True."
                ),
            )
        for acl in (r for r in attached if r.type in BUCKET_ACLS):
            canned = plain(get(acl.props, "acl"))
            if canned in PUBLIC_CANNED_ACLS:
                yield (
                    bucket.urn,
                    (
                        f"{label}: ACL '{canned}' (from {acl.label}) makes it public. Fix: remove "
                        "the ACL; keep object ownership BucketOwnerEnforced."
                    ),
                )
        if not _encrypted(bucket, [r for r in attached if r.type in ENCRYPTION]):
            yield (
                bucket.urn,
                (
                    f"{label} has no server-side encryption configuration. Fix: aws.s3."
                    "BucketServerSideEncryptionConfiguration with sse_algorithm 'aws:kms' or "
                    "'AES256'."
                ),
            )
        if not _tls_only([r for r in attached if r.type == BUCKET_POLICY]):
            yield (
                bucket.urn,
                (
                    f"{label} accepts plain-HTTP requests. Fix: a BucketPolicy statement that "
                    "denies s3:* to Principal '*' when aws:SecureTransport is 'false', on the "
                    "bucket and its objects."
                ),
            )
