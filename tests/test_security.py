"""Security properties of the recorded aws-gpu run that span components: what the EC2 user data
of both nodes may hold (anyone with ``ec2:DescribeInstanceAttribute`` and, with a hop limit of 2,
any pod on the node can read it), the k3s join tokens, the IMDS hop limits, and the model-read
IAM policy as registered."""

from __future__ import annotations

import base64
import gzip
import json
import re
from typing import Any

import pytest
import yaml

from components.kube.charts import (
    BUSYBOX,
    CUDA_SAMPLE,
    IMAGES,
    KUBE_VIP,
    OLLAMA,
    OPEN_WEBUI,
    ImagePin,
    digest_skip,
    parse_image,
    with_digest,
)
from tests.upstream_data import kubernetes_objects
from tools.mocks import Registration
from tools.offline import StackRun

NODE_ROLES = ("control-node", "gpu-worker")
INSTANCE = "aws:ec2/instance:Instance"
SPOT = "aws:ec2/spotInstanceRequest:SpotInstanceRequest"
# What a leaked credential looks like even when its value is not one this run generated.
SECRET_MARKERS = ("PRIVATE KEY", "K10", "token:", "password", "BEGIN NEBULA", "aws_secret")
MIN_SECRET_LENGTH = 8


def _node(run: StackRun, role: str) -> Registration:
    """The instance of a node kind, or the spot request that launches it."""
    (reg,) = [
        r for r in (*run.by_type(INSTANCE), *run.by_type(SPOT)) if r.name.startswith(f"{role}-")
    ]
    return reg


CREDENTIAL_PARAMETER = re.compile(r"(token|[-./]key)$")
"""SSM parameters holding a credential (k3s tokens, SSH and Nebula private keys, the mesh CA
key). Every node file is a SecureString, certificates and units too; those are not secrets."""


def run_secrets(run: StackRun) -> set[str]:
    """Every credential the run handles: the credential parameters put in SSM, the SSH private
    key and stdin of remote commands, provider kubeconfigs; a multi-line one also by each of its
    key-material lines (a PEM key is found by any line of it)."""
    values: list[str] = []
    for reg in run.registrations:
        inputs = reg.plain_inputs
        if reg.type == "aws:ssm/parameter:Parameter":
            if CREDENTIAL_PARAMETER.search(str(inputs.get("name", ""))):
                values.append(str(inputs["value"]))
        elif reg.type.startswith("command:"):
            connection = inputs.get("connection") or {}
            values += [str(connection[k]) for k in ("privateKey", "password") if k in connection]
            if "stdin" in reg.secret_inputs:
                values.append(str(inputs["stdin"]))
        elif reg.type == "pulumi:providers:kubernetes" and "kubeconfig" in reg.secret_inputs:
            values.append(str(inputs["kubeconfig"]))
    found: set[str] = set()
    for text in values:
        found.add(text)
        found.update(
            line.strip()
            for line in text.splitlines()
            if len(line.strip()) >= 24 and " " not in line.strip() and "-----" not in line
        )
    return {s for s in found if len(s) >= MIN_SECRET_LENGTH}


def user_data_texts(user_data: str) -> list[str]:
    """The user data and every file it writes, decoded (``gz+b64``/``b64`` write_files would
    otherwise hide a secret from a text search)."""
    texts = [user_data]
    document = yaml.safe_load(user_data.split("\n", 1)[1] if user_data.startswith("#") else "")
    for entry in (document or {}).get("write_files", []):
        content, encoding = entry.get("content", ""), entry.get("encoding", "")
        if encoding in ("gz+b64", "gzip+base64", "gz+base64"):
            texts.append(gzip.decompress(base64.b64decode(content)).decode())
        elif encoding in ("b64", "base64"):
            texts.append(base64.b64decode(content).decode())
        else:
            texts.append(content)
    return texts


def test_run_secrets_are_found(aws_gpu_run: StackRun) -> None:
    """The secret set is not empty by accident: it holds the Nebula host keys and the tokens."""
    secrets = run_secrets(aws_gpu_run)
    assert len(secrets) > 10, len(secrets)


def test_user_data_of_both_nodes_holds_no_key_token_or_password(aws_gpu_run: StackRun) -> None:
    secrets = run_secrets(aws_gpu_run)
    for role in NODE_ROLES:
        reg = _node(aws_gpu_run, role)
        user_data = reg.plain_inputs["userData"]
        texts = user_data_texts(user_data)
        assert len(texts) > 2, role  # the agent and its units are decoded and searched too
        for text in texts:
            leaked = sorted(s[:6] + "..." for s in secrets if s in text)
            assert not leaked, (role, leaked)
            lowered = text.lower()
            for marker in SECRET_MARKERS:
                assert marker.lower() not in lowered or _marker_is_code(marker, text), (
                    role,
                    marker,
                )


def _marker_is_code(marker: str, text: str) -> bool:
    """The node agent's source names what it fetches (e.g. a ``password`` variable): a marker
    there is code, not a value; every value is caught by the run-secrets search above."""
    return text.lstrip().startswith(("#!/usr/bin/env python3", '"""', "[Unit]"))


def test_a_secret_in_user_data_is_caught(aws_gpu_run: StackRun) -> None:
    """The check can fail: a user data carrying the Nebula key of the control node, gzipped in
    a write_files entry, is found."""
    secrets = run_secrets(aws_gpu_run)
    key = next(s for s in secrets if len(s) > 40)
    user_data = "#cloud-config\n" + yaml.safe_dump(
        {
            "write_files": [
                {
                    "path": "/etc/x",
                    "encoding": "gz+b64",
                    "content": base64.b64encode(gzip.compress(key.encode())).decode(),
                }
            ]
        }
    )
    assert any(key in text for text in user_data_texts(user_data))


def test_imds_hop_limits_and_tokens_required(aws_gpu_run: StackRun) -> None:
    """Control node: hop limit 1 (no pod reaches IMDS); worker: 2 (Mountpoint's pods need it)."""
    expected = {"control-node": 1, "gpu-worker": 2}
    for role, hops in expected.items():
        options = _node(aws_gpu_run, role).plain_inputs["metadataOptions"]
        assert options["httpTokens"] == "required", role
        assert options["httpPutResponseHopLimit"] == hops, role


def test_model_read_policy_is_limited_to_the_models_prefix(aws_gpu_run: StackRun) -> None:
    """As registered: ListBucket only under the prefix (s3:prefix condition), GetObject only on
    the prefix's objects; nothing else on S3 in any node policy."""
    policies = [
        json.loads(reg.plain_inputs["policy"])
        for reg in aws_gpu_run.by_type("aws:iam/rolePolicy:RolePolicy")
        # The nodes' roles (the uploader role writes by design: tests/test_model_access.py).
        if reg.name.startswith(("control-node-", "gpu-worker-"))
    ]
    s3 = [
        st
        for doc in policies
        for st in doc["Statement"]
        if any(str(a).startswith("s3:") for a in _list(st["Action"]))
    ]
    assert s3, "no model read statement registered"
    for statement in s3:
        actions = _list(statement["Action"])
        assert set(actions) <= {"s3:ListBucket", "s3:GetObject"}, actions
        assert statement["Effect"] == "Allow"
        if "s3:ListBucket" in actions:
            prefixes = statement["Condition"]["StringLike"]["s3:prefix"]
            assert all(p.startswith("ollama/") for p in prefixes), prefixes
            assert "/" not in str(statement["Resource"]).split(":::")[-1]
        else:
            assert str(statement["Resource"]).endswith("/ollama/*"), statement["Resource"]


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


# --- image pins ---------------------------------------------------------------------------------


def test_every_image_is_pinned_by_tag_and_the_digests_are_well_formed() -> None:
    for name, pin in IMAGES.items():
        assert parse_image(pin.ref) == ImagePin(pin.repository, pin.tag, pin.digest, "configured")
        assert pin.tag != "latest", name
        assert pin.provenance, name
    with_digest = sorted(name for name, pin in IMAGES.items() if pin.digest)
    assert with_digest == ["busybox", "ollama"]
    assert BUSYBOX.ref.endswith(
        "@sha256:9db7b59979c38555a39def84a31fb98b5296952f9e3afd4f6f11f05b07adfab0"
    )


@pytest.mark.parametrize(
    ("ref", "problem"),
    [
        ("docker.io/ollama/ollama", "not a pinned image"),
        ("docker.io/ollama/ollama:latest", "exact tag"),
        ("docker.io/ollama/ollama@sha256:" + "a" * 64, "not a pinned image"),
        ("docker.io/ollama/ollama:0.1@sha256:abc", "is not sha256:<64"),
        ("docker.io/ollama/ollama:0.1@sha256:" + "A" * 64, "is not sha256:<64"),
    ],
)
def test_a_loose_image_pin_is_refused(ref: str, problem: str) -> None:
    with pytest.raises(ValueError, match=re.escape(problem)):
        parse_image(ref)


def test_only_images_without_a_digest_skip_the_digest_checks() -> None:
    assert digest_skip(OLLAMA.ref) == {}
    skips = digest_skip(OPEN_WEBUI.ref)
    assert set(skips) == {"CKV_K8S_43", "CKV_K8S_15"}
    assert "open-webui:v0.11.3 has no verified digest" in skips["CKV_K8S_43"]
    assert "=" not in skips["CKV_K8S_43"]


def test_each_node_role_reads_only_its_own_ssm_path(aws_gpu_run: StackRun) -> None:
    """Root on a node gets what its role may read: its own files, never the other node's (the
    worker never sees the server token) nor the mesh CA key."""
    readable: dict[str, list[str]] = {}
    for reg in aws_gpu_run.by_type("aws:iam/rolePolicy:RolePolicy"):
        role = str(reg.plain_inputs["role"]).rsplit("-role", 1)[0]
        for statement in json.loads(reg.plain_inputs["policy"])["Statement"]:
            if any(str(a).startswith("ssm:") for a in _list(statement["Action"])):
                readable.setdefault(role, []).extend(_list(statement["Resource"]))
    assert set(readable) == {"control-node", "gpu-worker"}
    for role, resources in readable.items():
        for resource in resources:
            path = resource.split(":parameter", 1)[1]
            assert path in (f"/hybridgpu/aws-gpu/{role}", f"/hybridgpu/aws-gpu/{role}/*"), path


def test_a_configured_digest_reaches_the_objects_and_drops_their_digest_skip(
    valid_fixture_runs: dict[str, StackRun],
) -> None:
    """homelab-ollama-clients configures digests for the CUDA sample and the provisioner: the
    objects pull by tag and digest, and no longer skip checkov's digest checks."""
    run = valid_fixture_runs["homelab-ollama-clients"]
    objects = dict(kubernetes_objects(run))
    job = objects["cuda-validation-k3s-gpu-1"]
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["image"] == CUDA_SAMPLE.ref + "@sha256:" + "1" * 64
    assert "annotations" not in job["metadata"]
    provisioner = objects["storage-scratch-deployment"]
    (container,) = provisioner["spec"]["template"]["spec"]["containers"]
    assert container["image"].endswith(":v0.0.31@sha256:" + "2" * 64)
    skipped = " ".join(provisioner["metadata"]["annotations"].values())
    assert "CKV_K8S_43" not in skipped
    assert "CKV_K8S_38" in skipped


def test_with_digest_keeps_the_tag() -> None:
    assert with_digest(KUBE_VIP, None) == "ghcr.io/kube-vip/kube-vip:v1.0.4"
    assert with_digest(KUBE_VIP, "sha256:" + "a" * 64) == (
        "ghcr.io/kube-vip/kube-vip:v1.0.4@sha256:" + "a" * 64
    )
    with pytest.raises(ValueError, match="is not sha256"):
        with_digest(KUBE_VIP, "sha256:abc")
