"""The CrossGuard pack (policy/): every policy passes on both stacks' recorded resources, and each
fails, with a message naming the resource and the fix, on a copy with one mutation.

The recorded resources go through pulumi_policy's own analyzer service as the engine sends them
(tests/policy_engine.py); one test boots the pack as the engine does and talks gRPC to it.
"""

from __future__ import annotations

import copy
import json
import subprocess
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from google.protobuf import empty_pb2
from hybridgpu_policy import aws_rules, pack
from hybridgpu_policy.values import SECRET_SIG, SIG_KEY, is_secret
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc
from pulumi_policy import policy as policy_runtime

from stacks.config.gpu_instances import NVIDIA_GPU_FAMILIES
from tests.policy_engine import PolicyEngine, messages, struct
from tools import aws_taggable, offline
from tools.mocks import Registration

ROOT = Path(__file__).resolve().parent.parent
POLICY_DIR = ROOT / "policy"


@pytest.fixture(scope="module")
def engine() -> PolicyEngine:
    return PolicyEngine()


def test_every_policy_passes_on_both_stacks(
    engine: PolicyEngine, aws_gpu_run: offline.StackRun, homelab_run: offline.StackRun
) -> None:
    for run in (aws_gpu_run, homelab_run):
        assert messages(engine.analyze(run.registrations)) == [], run.stack


# --------------------------------------------------------------------------------------------
# One mutation per policy
# --------------------------------------------------------------------------------------------


def _is_node(registration: Registration, role: str) -> bool:
    """The instance of a node kind, or the spot request that launches it."""
    node_types = (aws_rules.INSTANCE, aws_rules.SPOT_REQUEST)
    return registration.type in node_types and _role(registration) == role


def _role(registration: Registration) -> str:
    tags = registration.plain_inputs.get("tags") or {}
    return str(tags.get("Role", ""))


def _first_container(inputs: dict[str, Any]) -> dict[str, Any]:
    return inputs["spec"]["template"]["spec"]["containers"][0]


def _untagged(image: str) -> str:
    """``registry/name`` of an image reference, without tag or digest."""
    name = image.split("@", 1)[0]
    head, _, last = name.rpartition("/")
    return f"{head}/{last.split(':', 1)[0]}" if head else last.split(":", 1)[0]


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def change(inputs: dict[str, Any]) -> dict[str, Any]:
        *parents, leaf = path.split(".")
        target = inputs
        for part in parents:
            target = target[part]
        target[leaf] = value
        return inputs

    return change


def _drop_cost_tag(inputs: dict[str, Any]) -> dict[str, Any]:
    default_tags = json.loads(inputs["defaultTags"])
    del default_tags["tags"]["Project"]
    inputs["defaultTags"] = json.dumps(default_tags)
    return inputs


def _latest_image(inputs: dict[str, Any]) -> dict[str, Any]:
    container = _first_container(inputs)
    container["image"] = _untagged(container["image"]) + ":latest"
    return inputs


def _unwrap_string_data(inputs: dict[str, Any]) -> dict[str, Any]:
    assert is_secret(inputs["stringData"]), "the recorded Secret is no longer a Pulumi secret"
    inputs["stringData"] = inputs["stringData"]["value"]
    return inputs


def _drop_version(inputs: dict[str, Any]) -> dict[str, Any]:
    del inputs["version"]
    return inputs


@dataclass(frozen=True)
class Mutation:
    stack: str
    target: Callable[[Registration], bool]
    change: Callable[[dict[str, Any]], dict[str, Any]]
    expected: tuple[str, ...]
    """Fragments of the violation message: what is wrong and the fix."""
    flagged: Callable[[Registration], bool] | None = None
    """The resource the violation names, when not the changed one (a bucket for its parts)."""


MUTATIONS: dict[str, Mutation] = {
    "ec2-imdsv2-required": Mutation(
        "aws-gpu",
        lambda r: _is_node(r, "gpu-worker"),
        _set("metadataOptions.httpTokens", "optional"),
        ("accepts IMDSv1", "httpTokens is optional", "http_tokens='required'"),
    ),
    "ebs-encrypted": Mutation(
        "aws-gpu",
        lambda r: r.type == aws_rules.INSTANCE and _role(r) == "control-node",
        _set("rootBlockDevice.encrypted", False),
        ("root volume is not encrypted", "encrypted=True"),
    ),
    "s3-bucket-private-encrypted-tls-only": Mutation(
        "aws-gpu",
        lambda r: (
            r.type == "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
            and r.name == "models-public-access"
        ),
        _set("restrictPublicBuckets", False),
        ("public-access blocks off (restrictPublicBuckets)", "restrict_public_buckets all True"),
        flagged=lambda r: r.type == "aws:s3/bucket:Bucket" and r.name == "models-bucket",
    ),
    "no-world-open-tcp-ingress": Mutation(
        "aws-gpu",
        lambda r: (
            r.type == aws_rules.VPC_INGRESS_RULE and r.plain_inputs.get("ipProtocol") == "tcp"
        ),
        _set("cidrIpv4", "0.0.0.0/0"),
        ("is open to 0.0.0.0/0", "adminCidrs"),
    ),
    "helm-chart-version-pinned": Mutation(
        "aws-gpu",
        lambda r: r.type == "kubernetes:helm.sh/v3:Release",
        _drop_version,
        ("no chart version", "version='<exact release>'"),
    ),
    "container-image-pinned": Mutation(
        "homelab",
        lambda r: r.type == "kubernetes:apps/v1:Deployment",
        _latest_image,
        ("has tag 'latest'", "name:tag@sha256:<digest>"),
    ),
    "secrets-are-pulumi-secrets": Mutation(
        "homelab",
        lambda r: r.type == "kubernetes:core/v1:Secret",
        _unwrap_string_data,
        ("of a Kubernetes Secret is plain text", "Pulumi secret"),
    ),
    "gpu-worker-nvidia-instance-type": Mutation(
        "aws-gpu",
        lambda r: _is_node(r, "gpu-worker"),
        _set("instanceType", "g4ad.xlarge"),  # AMD Radeon Pro V520
        ("instance type g4ad.xlarge", "not an NVIDIA GPU family", "gpuWorker.instanceType"),
    ),
    "aws-cost-tags": Mutation(
        "aws-gpu",
        lambda r: r.type == "pulumi:providers:aws",
        _drop_cost_tag,
        ("cost tag(s) Project missing", "default_tags"),
    ),
}


def mutated(
    registrations: list[Registration], mutation: Mutation
) -> tuple[list[Registration], Registration]:
    """A copy with the first matching registration changed (the others are shared, unchanged)."""
    for index, registration in enumerate(registrations):
        if mutation.target(registration):
            changed = replace(
                registration, inputs=mutation.change(copy.deepcopy(registration.inputs))
            )
            return [*registrations[:index], changed, *registrations[index + 1 :]], changed
    raise AssertionError("no recorded resource matches the mutation's target")


def test_every_policy_has_a_mutation() -> None:
    assert sorted(MUTATIONS) == sorted(rule.name for rule in pack.RULES)


@pytest.mark.parametrize("policy", sorted(MUTATIONS))
def test_each_policy_fails_with_its_message_on_a_mutated_copy(
    policy: str,
    engine: PolicyEngine,
    aws_gpu_run: offline.StackRun,
    homelab_run: offline.StackRun,
) -> None:
    mutation = MUTATIONS[policy]
    run = aws_gpu_run if mutation.stack == "aws-gpu" else homelab_run
    registrations, changed = mutated(run.registrations, mutation)
    violations = engine.analyze(registrations)
    assert violations, f"{policy}: no violation on the mutated copy"
    assert {v.policy for v in violations} == {policy}, messages(violations)
    if policy == "aws-cost-tags":  # a provider change concerns every resource it serves
        named = violations
    else:
        flagged = mutation.flagged or (lambda r: r.urn == changed.urn)
        (subject,) = [r for r in registrations if flagged(r)]
        assert {v.urn for v in violations} == {subject.urn}, messages(violations)
        named = [v for v in violations if f"'{subject.name}'" in v.message]
        assert named == violations, messages(violations)
    for fragment in mutation.expected:
        assert any(fragment in v.message for v in named), (fragment, messages(named))


def test_cost_tag_violations_name_each_taggable_resource(
    engine: PolicyEngine, aws_gpu_run: offline.StackRun
) -> None:
    registrations, _ = mutated(aws_gpu_run.registrations, MUTATIONS["aws-cost-tags"])
    flagged = {v.urn for v in engine.analyze(registrations)}
    by_type = {r.urn: r.type for r in registrations}
    vpc = next(r for r in registrations if r.type == "aws:ec2/vpc:Vpc")
    untaggable = [r for r in registrations if r.type == "aws:s3/bucketPolicy:BucketPolicy"]
    assert vpc.urn in flagged  # taggable; its tags come from the provider's default tags
    assert untaggable
    assert not {r.urn for r in untaggable} & flagged  # BucketPolicy has no tags
    assert {by_type[urn] for urn in flagged} <= aws_rules.taggable_types()


# --------------------------------------------------------------------------------------------
# Secret markers reach the rules
# --------------------------------------------------------------------------------------------


def test_without_the_marker_fix_pulumi_policy_hides_secretness(
    homelab_run: offline.StackRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Why pack.keep_secret_markers exists: with pulumi_policy's own deserializer a secret looks
    plain, so the correct stack would be flagged (pulumi/pulumi-policy#241)."""
    engine = PolicyEngine()
    monkeypatch.setattr(policy_runtime, "deserialize_properties", pack._ORIGINAL_DESERIALIZE)
    flagged = {v.policy for v in engine.analyze(homelab_run.registrations)}
    assert flagged == {"secrets-are-pulumi-secrets"}


@contextmanager
def serve_pack() -> Iterator[str]:
    # As the engine starts a Python pack: `python -m pulumi.policy <engine> .` in the pack
    # directory (pulumi/pulumi sdk/go/common/resource/plugin/analyzer_plugin.go; pulumi/policy/
    # __main__.py runs the directory's __main__.py).
    python = POLICY_DIR / "venv" / "bin" / "python"
    if not python.exists():
        pytest.fail("policy/venv is missing; ./dev policy-setup creates it (./dev test does)")
    process = subprocess.Popen(
        [str(python), "-u", "-m", "pulumi.policy", "127.0.0.1:1", "."],
        cwd=POLICY_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        port = process.stdout.readline().strip()
        assert port.isdigit(), process.stderr.read() if process.stderr else port
        yield f"127.0.0.1:{port}"
    finally:
        process.kill()
        process.wait(timeout=10)


def test_the_pack_boots_in_its_own_virtualenv_and_keeps_secret_markers() -> None:
    """policy/venv holds only policy/requirements.txt: the pack imports nothing of the program."""
    with serve_pack() as address, grpc.insecure_channel(address) as channel:
        if True:
            analyzer = analyzer_pb2_grpc.AnalyzerStub(channel)
            info = analyzer.GetAnalyzerInfo(empty_pb2.Empty(), timeout=30)
            assert info.name == pack.PACK_NAME
            assert sorted(p.name for p in info.policies) == sorted(r.name for r in pack.RULES)
            assert {p.enforcementLevel for p in info.policies} == {analyzer_pb2.MANDATORY}

            def analyze(string_data: Any) -> list[str]:
                request = analyzer_pb2.AnalyzeRequest(
                    type="kubernetes:core/v1:Secret",
                    name="s",
                    urn="urn:pulumi:t::p::kubernetes:core/v1:Secret::s",
                    properties=struct({"stringData": string_data}),
                )
                response = analyzer.Analyze(request, timeout=30)
                return [d.message for d in response.diagnostics]

            assert analyze({SIG_KEY: SECRET_SIG, "value": {"password": "x"}}) == []
            assert any("stringData.password" in m for m in analyze({"password": "x"}))


# --------------------------------------------------------------------------------------------
# The pack's data stays in step with the program
# --------------------------------------------------------------------------------------------


def test_gpu_families_match_the_programs_list() -> None:
    assert sorted(aws_rules.DEFAULT_GPU_FAMILIES) == sorted(NVIDIA_GPU_FAMILIES)


def test_taggable_types_match_the_installed_pulumi_aws() -> None:
    current = (POLICY_DIR / "hybridgpu_policy" / "aws_taggable_types.txt").read_text()
    assert current == aws_taggable.render(), "run: python -m tools.aws_taggable --write"
    types = aws_rules.taggable_types()
    assert "aws:ec2/instance:Instance" in types
    assert "aws:ec2/routeTableAssociation:RouteTableAssociation" not in types


def test_pack_project_and_pins() -> None:
    project = yaml.safe_load((POLICY_DIR / "PulumiPolicy.yaml").read_text())
    assert project["runtime"] == {
        "name": "python",
        "options": {"toolchain": "pip", "virtualenv": "venv"},
    }
    pack_pins = (POLICY_DIR / "requirements.txt").read_text().split()
    dev = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    dev_pins = dev["optional-dependencies"]["dev"]
    assert "pulumi-policy==1.21.0" in pack_pins
    assert [p for p in dev_pins if p.startswith("pulumi-policy")] == ["pulumi-policy==1.21.0"]
