"""Off-site etcd snapshots (issue #22): every homelab server snapshots on the configured schedule
to the aws-gpu stack's backup bucket; the bucket is private, encrypted, versioned, with a
lifecycle for old versions; the writer's IAM policy allows only the snapshot folder; its key
reaches the cluster as a Secret, never in a command."""

from __future__ import annotations

import json
from typing import Any

import pytest

from components.aws.backup_bucket import writer_policy
from components.k3s.etcd_snapshots import S3_CONFIG_SECRET, S3_CONFIG_SECRET_TYPE
from stacks.backups import ETCD_FOLDER, VELERO_FOLDER
from tests.k3s_configs import homelab_installs
from tools import offline
from tools.offline import StackRun

NEEDED_ACTIONS = {
    "s3:ListBucket",
    "s3:PutObject",
    "s3:GetObject",
    "s3:DeleteObject",
    "s3:AbortMultipartUpload",
    "s3:ListMultipartUploadParts",
}


ACME_USER = "acme-dns01"  # its policy and key: tests/test_tls.py


def _one(run: StackRun, typ: str, name: str) -> dict[str, Any]:
    return run.one(typ, name).plain_inputs


def _bucket(run: StackRun) -> tuple[str, str]:
    outputs = run.outputs_of("hybridgpu:aws:BackupBucket", "backups")
    return outputs["bucketName"], outputs["arn"]


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def policy_problems(
    document: dict[str, Any],
    bucket_arn: str,
    folder: str,
    list_prefixes: list[str] | None = None,
) -> list[str]:
    """Anything a backup writer may do beyond its folder (``list_prefixes``: the s3:prefix
    values its listing may use; k3s's ``[folder, folder/*]`` by default)."""
    problems = []
    allowed_resources = {bucket_arn, f"{bucket_arn}/{folder}/*"}
    expected_prefixes = list_prefixes or [folder, f"{folder}/*"]
    for st in document["Statement"]:
        actions = _list(st["Action"])
        resources = _list(st["Resource"])
        if st["Effect"] != "Allow":
            continue
        problems += [f"action {a}" for a in actions if a not in NEEDED_ACTIONS]
        problems += [f"resource {r}" for r in resources if r not in allowed_resources]
        if "NotAction" in st or "NotResource" in st:
            problems.append("NotAction/NotResource")
        for action in actions:
            for resource in resources:
                on_bucket = resource == bucket_arn
                if on_bucket != (action == "s3:ListBucket"):
                    problems.append(f"{action} on {resource}")
        if "s3:ListBucket" in actions:
            prefixes = next(iter(st.get("Condition", {}).values()), {}).get("s3:prefix", [])
            if sorted(prefixes) != sorted(expected_prefixes):
                problems.append(f"ListBucket prefixes {prefixes}")
    return problems


def test_the_writer_policy_allows_only_the_snapshot_folder(aws_gpu_run: StackRun) -> None:
    bucket, arn = _bucket(aws_gpu_run)
    policy = _one(aws_gpu_run, "aws:iam/userPolicy:UserPolicy", "backups-writer-policy")
    document = json.loads(policy["policy"])
    assert policy_problems(document, arn, ETCD_FOLDER) == []
    granted = {a for st in document["Statement"] for a in _list(st["Action"])}
    assert granted == NEEDED_ACTIONS
    # No version deletes: a stolen key cannot erase history; k3s's deletes leave versions.
    assert "s3:DeleteObjectVersion" not in granted
    assert bucket.startswith("hybridgpu-backups-")


def test_the_policy_check_can_fail() -> None:
    arn = "arn:aws:s3:::b"
    document = json.loads(writer_policy(arn, "etcd"))
    document["Statement"][1]["Resource"] = [f"{arn}/*"]
    document["Statement"][1]["Action"].append("s3:DeleteObjectVersion")
    assert policy_problems(document, arn, "etcd") == [
        "action s3:DeleteObjectVersion",
        "resource arn:aws:s3:::b/*",
    ]
    document = json.loads(writer_policy(arn, "etcd"))
    document["Statement"][0]["Condition"] = {}
    assert policy_problems(document, arn, "etcd") == ["ListBucket prefixes []"]


def test_velero_writer_policy_allows_only_the_velero_folder(aws_gpu_run: StackRun) -> None:
    """Velero's key: the same object rights on velero/ only, listing only under velero/ (never
    the etcd folder, no bare-folder or prefix-less listing), no version deletes."""
    _, arn = _bucket(aws_gpu_run)
    policy = _one(aws_gpu_run, "aws:iam/userPolicy:UserPolicy", "backups-velero-writer-policy")
    document = json.loads(policy["policy"])
    prefixes = [f"{VELERO_FOLDER}/", f"{VELERO_FOLDER}/*"]
    assert policy_problems(document, arn, VELERO_FOLDER, prefixes) == []
    (listing,) = [s for s in document["Statement"] if s["Action"] == "s3:ListBucket"]
    # IfExists: the prefix-less ListBucket that S3 makes of kopia's HeadBucket on connect
    # (components/aws/backup_bucket.py velero_writer_policy); any prefix given is still velero/.
    assert list(listing["Condition"]) == ["StringLikeIfExists"]
    granted = {a for st in document["Statement"] for a in _list(st["Action"])}
    assert granted == NEEDED_ACTIONS
    # The etcd writer's policy fails the Velero check, and the other way round.
    etcd = json.loads(
        _one(aws_gpu_run, "aws:iam/userPolicy:UserPolicy", "backups-writer-policy")["policy"]
    )
    assert policy_problems(etcd, arn, VELERO_FOLDER, prefixes) != []
    assert policy_problems(document, arn, ETCD_FOLDER) != []


def test_each_writer_has_its_one_policy_and_nothing_else(aws_gpu_run: StackRun) -> None:
    # The other IAM user, the ACME DNS-01 key's, is tests/test_tls.py's.
    users = [u for u in aws_gpu_run.by_type("aws:iam/user:User") if u.name != ACME_USER]
    assert sorted(u.name for u in users) == ["backups-velero-writer", "backups-writer"]
    assert not aws_gpu_run.by_type("aws:iam/userPolicyAttachment:UserPolicyAttachment")
    assert not aws_gpu_run.by_type("aws:iam/userGroupMembership:UserGroupMembership")
    inline = {
        r.name: r.plain_inputs["user"]
        for r in aws_gpu_run.by_type("aws:iam/userPolicy:UserPolicy")
        if r.name != f"{ACME_USER}-policy"
    }
    assert sorted(inline) == ["backups-velero-writer-policy", "backups-writer-policy"]
    for name, user in inline.items():
        assert user.startswith(name.removesuffix("-policy") + "-"), (name, user)
    keys = sorted(
        k.name
        for k in aws_gpu_run.by_type("aws:iam/accessKey:AccessKey")
        if k.name != f"{ACME_USER}-key"
    )
    assert keys == ["backups-velero-writer-key", "backups-writer-key"]


def test_the_bucket_is_private_encrypted_versioned_with_a_lifecycle(
    aws_gpu_run: StackRun,
) -> None:
    aws = offline.stack_config_file("aws-gpu")["hybridgpu:aws"]
    block = _one(
        aws_gpu_run,
        "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
        "backups-public-access",
    )
    assert all(
        block[k]
        for k in (
            "blockPublicAcls",
            "blockPublicPolicy",
            "ignorePublicAcls",
            "restrictPublicBuckets",
        )
    )
    sse = _one(
        aws_gpu_run,
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
        "backups-encryption",
    )
    assert sse["rules"][0]["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "AES256"
    versioning = _one(aws_gpu_run, "aws:s3/bucketVersioning:BucketVersioning", "backups-versioning")
    assert versioning["versioningConfiguration"]["status"] == "Enabled"
    lifecycle = _one(
        aws_gpu_run,
        "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
        "backups-lifecycle",
    )
    days = {
        r["id"]: r.get("noncurrentVersionExpiration", {}).get("noncurrentDays")
        for r in lifecycle["rules"]
    }
    assert days["expire-pruned-snapshots"] == aws["backups"]["noncurrentVersionExpirationDays"]
    tls = json.loads(
        _one(aws_gpu_run, "aws:s3/bucketPolicy:BucketPolicy", "backups-tls-only")["policy"]
    )
    assert tls["Statement"][0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_every_homelab_server_snapshots_to_s3_on_the_schedule(homelab_run: StackRun) -> None:
    homelab = offline.stack_config_file("homelab")["hybridgpu:homelab"]
    etcd = homelab["backups"]["etcd"]
    servers = {vm["name"] for vm in homelab["controlPlanes"]}
    seen = set()
    for install in homelab_installs(homelab_run):
        node, config = install.node, install.config
        s3_keys = sorted(k for k in config if k.startswith("etcd-"))
        if node not in servers:
            assert s3_keys == [], node
            continue
        seen.add(node)
        assert config["etcd-snapshot-schedule-cron"] == etcd["scheduleCron"]
        assert config["etcd-snapshot-retention"] == etcd["retention"]
        assert config["etcd-s3"] is True
        # Only these two S3 options: with any other one set, k3s ignores the Secret.
        assert [k for k in s3_keys if k.startswith("etcd-s3")] == [
            "etcd-s3",
            "etcd-s3-config-secret",
        ]
        assert config["etcd-s3-config-secret"] == S3_CONFIG_SECRET
    assert seen == servers


def test_the_s3_secret_points_at_the_aws_bucket_and_no_command_carries_the_key(
    aws_gpu_run: StackRun, homelab_run: StackRun
) -> None:
    bucket, _ = _bucket(aws_gpu_run)
    secret = _one(homelab_run, "kubernetes:core/v1:Secret", "etcd-snapshot-store-s3-config")
    assert secret["metadata"] == {"name": S3_CONFIG_SECRET, "namespace": "kube-system"}
    assert secret["type"] == S3_CONFIG_SECRET_TYPE
    data = secret["stringData"]
    assert data["etcd-s3-bucket"] == bucket
    assert data["etcd-s3-folder"] == ETCD_FOLDER
    assert data["etcd-s3-region"] == aws_gpu_run.exports["region"]
    assert data["etcd-s3-access-key"] == aws_gpu_run.exports["etcdBackupAccessKeyId"]
    key = aws_gpu_run.exports["etcdBackupSecretAccessKey"]
    assert data["etcd-s3-secret-key"] == key
    assert "etcdBackupSecretAccessKey" in aws_gpu_run.secret_exports
    for run in (aws_gpu_run, homelab_run):
        for reg in run.by_type("command:remote:Command"):
            assert key not in json.dumps(reg.plain_inputs), reg.name


@pytest.mark.parametrize("enabled", [False])
def test_snapshots_can_be_turned_off(enabled: bool) -> None:
    from stacks.backups import etcd_snapshots
    from stacks.config import parse_homelab, parse_project

    raw = offline.stack_config_file("homelab")["hybridgpu:homelab"]
    raw = {**raw, "backups": {"etcd": {"enabled": enabled}}}
    assert etcd_snapshots(parse_homelab(parse_project({}), raw)) is None


def test_the_rotation_commands_in_the_readme_name_the_access_keys(aws_gpu_run: StackRun) -> None:
    keys = [
        k
        for k in aws_gpu_run.by_type("aws:iam/accessKey:AccessKey")
        if k.name.startswith("backups-")
    ]
    assert len(keys) == 2  # etcd's and Velero's writer
    readme = (offline.REPO_ROOT / "README.md").read_text()
    for key in keys:
        assert f"--replace\n'{key.urn}'" in readme or f"--replace '{key.urn}'" in readme, key.name
