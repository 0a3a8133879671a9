"""The aws-gpu stack under the mocks: hardening, least privilege, secrets, tags, spot settings
and the output contract, asserted on the recorded registrations (plain data). The exact user data
of each recorded node is checked by the real cloud-init and shellcheck."""

from __future__ import annotations

import base64
import copy
import gzip
import inspect
import ipaddress
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pulumi
import pulumi_aws as aws
import pytest
import yaml

from components.aws.cloud_init import runcmd_as_shell
from components.k3s.kubeconfig import DIAL_ERROR_LIMIT, KubeconfigFetch, KubeconfigFetchArgs
from stacks import outputs
from stacks.config import ConfigError
from tests.real_tools import cloud_init_schema, require, run
from tools import fakes, mocks, offline
from tools.mocks import Registration
from tools.offline import StackRun

INSTANCE = "aws:ec2/instance:Instance"
SPOT = "aws:ec2/spotInstanceRequest:SpotInstanceRequest"
PARAMETER = "aws:ssm/parameter:Parameter"
INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
EGRESS = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
BUCKET = "aws:s3/bucket:Bucket"
ROLE_BY_COMPONENT = {
    "hybridgpu:aws:Network": "network",
    "hybridgpu:aws:ModelBucket": "model-bucket",
    "hybridgpu:aws:CostBudget": "budget",
    "hybridgpu:aws:BackupBucket": "backups",
    "hybridgpu:aws:ModelUploader": "model-uploader",
    "hybridgpu:aws:AcmeDnsUser": "acme-dns01",
    "hybridgpu:aws:WakeAccess": "wake-gate",
}
NODE_ROLES = ("control-node", "gpu-worker")
WAKE_START_POLICY = "wake-access-start"


def _aws_config() -> dict[str, Any]:
    return copy.deepcopy(offline.stack_config_file("aws-gpu")["hybridgpu:aws"])


def _run_with(**changes: Any) -> StackRun:
    """aws-gpu with top-level keys of ``hybridgpu:aws`` replaced (None removes a key)."""
    config = _aws_config()
    for key, value in changes.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    return offline.run_stack("aws-gpu", {"hybridgpu:aws": config})


def node(run: StackRun, role: str) -> Registration:
    """The instance of a node kind, or the spot request that launches it."""
    (found,) = [
        r for r in (*run.by_type(INSTANCE), *run.by_type(SPOT)) if r.name.startswith(f"{role}-")
    ]
    return found


def parameter(run: StackRun, name: str) -> str:
    """Plain value of the SSM parameter ``name`` (full path)."""
    (found,) = [r for r in run.by_type(PARAMETER) if r.plain_inputs["name"] == name]
    return found.plain_inputs["value"]


def _token(run: StackRun) -> str:
    return parameter(run, "/hybridgpu/aws-gpu/control-node/files/k3s/cluster-token")


def _kubeconfig_fetch(run: StackRun) -> Registration:
    """The SSH command reading k3s.yaml (gpu-waker's install is the stack's other one)."""
    (command,) = [c for c in run.by_type("command:remote:Command") if c.name != "gpu-waker-install"]
    return command


def _aws_resources(run: StackRun) -> Iterator[Registration]:
    return (r for r in run.managed() if r.type.startswith("aws:") and r.custom)


# --- instances ---------------------------------------------------------------------------------


def test_every_node_requires_imdsv2_with_the_least_hop_limit_and_an_encrypted_gp3_root(
    aws_gpu_run: StackRun,
) -> None:
    config = _aws_config()
    expected = {
        # No pod on the control node needs IMDS; Mountpoint's pod on the worker does.
        "control-node": (config["controlNode"]["rootVolumeGiB"], 1),
        "gpu-worker": (config["gpuWorker"]["rootVolumeGiB"], 2),
    }
    for role, (size, hops) in expected.items():
        inputs = node(aws_gpu_run, role).plain_inputs
        assert inputs["metadataOptions"]["httpTokens"] == "required", role
        assert inputs["metadataOptions"]["httpPutResponseHopLimit"] == hops, role
        root = inputs["rootBlockDevice"]
        assert root["encrypted"] is True, role
        assert root["volumeType"] == "gp3", role
        assert root["volumeSize"] == size


def test_user_data_only_bootstraps_holds_no_secret_and_never_stops_a_node(
    aws_gpu_run: StackRun,
) -> None:
    for role in NODE_ROLES:
        reg = node(aws_gpu_run, role)
        assert "userData" not in reg.secret_inputs, role
        text = reg.plain_inputs["userData"]
        for marker in ("PRIVATE KEY", _token(aws_gpu_run), "K10"):
            assert marker not in text, (role, marker[:12])
        # A user-data edit would stop and start the instance, a newer AMI or another key
        # would replace it: none of these reaches a launched node.
        assert {"ami", "userData", "keyName"} <= set(reg.ignore_changes), role
        assert "keyName" not in reg.plain_inputs, role
    assert not aws_gpu_run.by_type("aws:ec2/keyPair:KeyPair")
    assert node(aws_gpu_run, "control-node").protect, "the control node holds the datastore"


def test_nodes_use_the_configured_types_and_instance_profiles(aws_gpu_run: StackRun) -> None:
    config = _aws_config()
    for role, section in (("control-node", "controlNode"), ("gpu-worker", "gpuWorker")):
        inputs = node(aws_gpu_run, role).plain_inputs
        assert inputs["instanceType"] == config[section]["instanceType"]
        assert inputs["iamInstanceProfile"].startswith(f"{role}-profile")
    control = node(aws_gpu_run, "control-node").plain_inputs
    # Burstable control node: standard credits, no surprise CPU-surplus bill.
    assert control["creditSpecification"] == {"cpuCredits": "standard"}
    # A fixed private address: the worker joins it by address.
    assert control["privateIp"] == "10.100.1.10"


def test_control_node_has_an_elastic_ip_and_the_lookup_ami(aws_gpu_run: StackRun) -> None:
    eip = aws_gpu_run.one("aws:ec2/eip:Eip", "control-node-eip").plain_inputs
    assert eip["domain"] == "vpc"
    assoc = aws_gpu_run.one("aws:ec2/eipAssociation:EipAssociation", "control-node-eip-assoc")
    # The control node's id (the mocks form instance ids as EC2 does, i-<17 hex>).
    assert assoc.plain_inputs["instanceId"] == aws_gpu_run.exports["wakeGate"]["controlInstanceId"]
    assert re.fullmatch(r"i-[0-9a-f]{17}", assoc.plain_inputs["instanceId"])
    assert aws_gpu_run.one("aws:ec2/eip:Eip", "control-node-eip").protect
    lookups = [args for token, args in aws_gpu_run.calls if token == "aws:ec2/getAmi:getAmi"]
    ubuntu = next(a for a in lookups if a["owners"] == ["099720109477"])
    assert ubuntu["mostRecent"] is True
    assert {f["name"] for f in ubuntu["filters"]} == {
        "name",
        "architecture",
        "virtualization-type",
    }
    dlami = next(a for a in lookups if a["owners"] == ["amazon"])
    assert "Deep Learning Base OSS Nvidia Driver" in dlami["filters"][0]["values"][0]


def test_a_fixed_ami_id_skips_the_lookup_and_a_missing_zone_takes_the_first() -> None:
    worker = _aws_config()["gpuWorker"] | {"ami": {"id": "ami-0123456789abcdef0"}}
    run = _run_with(gpuWorker=worker, availabilityZone=None)
    assert node(run, "gpu-worker").plain_inputs["ami"] == "ami-0123456789abcdef0"
    lookups = [args for token, args in run.calls if token == "aws:ec2/getAmi:getAmi"]
    assert [a["owners"] for a in lookups] == [["099720109477"]]  # the control node's only
    subnet = run.one("aws:ec2/subnet:Subnet", "network-public").plain_inputs
    assert subnet["availabilityZone"] == "us-west-2a"  # first zone of the mocked region


def test_every_invoke_goes_through_the_stack_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    """AMI ids are regional: a lookup through a default provider could return another region's."""
    plan_mocks, _ = mocks.install_mocks()  # the session's mocks (conftest installed them)
    seen: list[tuple[str, str]] = []
    original = plan_mocks.call

    def recording(args: pulumi.runtime.MockCallArgs) -> Any:
        seen.append((args.token, args.provider or ""))
        return original(args)

    monkeypatch.setattr(plan_mocks, "call", recording)
    _run_with(availabilityZone=None)
    assert {token for token, _ in seen} == {
        "aws:ec2/getAmi:getAmi",
        "aws:index/getAvailabilityZones:getAvailabilityZones",
        "aws:ec2/getInstanceTypeOfferings:getInstanceTypeOfferings",
        "aws:ec2/getSpotPrice:getSpotPrice",
        "aws:index/getCallerIdentity:getCallerIdentity",
        "aws:index/getPartition:getPartition",
        "aws:index/getRegion:getRegion",
    }
    assert all("pulumi:providers:aws::aws::" in provider for _, provider in seen), seen


# --- spot --------------------------------------------------------------------------------------


def test_spot_worker_is_a_spot_request_whose_deletion_cancels_it(aws_gpu_run: StackRun) -> None:
    """A persistent request left open relaunches an untagged GPU instance after the instance is
    deleted (hashicorp/terraform-provider-aws#38142); deleting an ``aws_spot_instance_request``
    cancels the request, then terminates the instance (internal/service/ec2/
    ec2_spot_instance_request.go, resourceSpotInstanceRequestDelete). So the worker is one."""
    spot = _aws_config()["gpuWorker"]["spot"]
    inputs = aws_gpu_run.one(SPOT, "gpu-worker-spot").plain_inputs
    assert inputs["spotType"] == spot["requestType"]
    assert inputs["instanceInterruptionBehavior"] == spot["interruptionBehavior"]
    assert inputs["spotPrice"] == spot["maxPriceUsdPerHour"]
    assert inputs["validUntil"] == "2036-01-01T00:00:00Z"
    assert inputs["waitForFulfillment"] is True
    assert "validUntil" in aws_gpu_run.one(SPOT, "gpu-worker-spot").ignore_changes
    assert not [
        i for i in aws_gpu_run.by_type(INSTANCE) if "instanceMarketOptions" in i.plain_inputs
    ]
    # What the request launches gets the cost tags through aws.ec2.Tag (instance and volume).
    tags = {
        (t.plain_inputs["resourceId"][:2], t.plain_inputs["key"]): t.plain_inputs["value"]
        for t in aws_gpu_run.by_type("aws:ec2/tag:Tag")
    }
    for prefix in ("i-", "vo"):
        assert tags[(prefix, "Project")] == "hybridgpu"
        assert tags[(prefix, "Role")] == "gpu-worker"


def test_on_demand_worker_is_a_plain_instance() -> None:
    worker = _aws_config()["gpuWorker"] | {"market": "on-demand"}
    run = _run_with(gpuWorker=worker)
    inputs = run.one(INSTANCE, "gpu-worker-instance").plain_inputs
    assert "instanceMarketOptions" not in inputs
    assert not run.by_type(SPOT)


def test_one_time_terminating_spot_without_a_price_cap() -> None:
    worker = _aws_config()["gpuWorker"] | {
        "spot": {"requestType": "one-time", "interruptionBehavior": "terminate"}
    }
    inputs = _run_with(gpuWorker=worker).one(SPOT, "gpu-worker-spot").plain_inputs
    assert (inputs["spotType"], inputs["instanceInterruptionBehavior"]) == ("one-time", "terminate")
    assert "spotPrice" not in inputs
    assert "validUntil" not in inputs


def test_a_gpu_type_not_offered_in_the_zone_is_a_clear_error_before_the_worker() -> None:
    fakes.UNOFFERED_TYPES.add("g4dn.xlarge")
    try:
        with pytest.raises(ConfigError) as caught:
            offline.run_stack("aws-gpu")
    finally:
        fakes.UNOFFERED_TYPES.discard("g4dn.xlarge")
    message = str(caught.value)
    assert (
        "hybridgpu:aws.gpuWorker.instanceType: g4dn.xlarge is not offered in us-west-2a" in message
    )


def test_a_spot_cap_below_the_current_price_warns_naming_both_and_still_plans(
    aws_gpu_run: StackRun, caplog: pytest.LogCaptureFixture
) -> None:
    cap = _aws_config()["gpuWorker"]["spot"]["maxPriceUsdPerHour"]
    assert float(cap) > float("0.2000")  # the fakes' default price: the session run is quiet
    # The session run looked the price up once, for the worker's type and zone.
    lookups = [
        args for token, args in aws_gpu_run.calls if token == "aws:ec2/getSpotPrice:getSpotPrice"
    ]
    assert [(a["instanceType"], a["availabilityZone"]) for a in lookups] == [
        ("g4dn.xlarge", "us-west-2a")
    ]
    fakes.SPOT_PRICES["g4dn.xlarge"] = "0.5500"
    try:
        with caplog.at_level("WARNING"):
            run = offline.run_stack("aws-gpu")
    finally:
        fakes.SPOT_PRICES.clear()
    warnings = [r.getMessage() for r in caplog.records if "maxPriceUsdPerHour" in r.getMessage()]
    assert warnings == [
        f"hybridgpu:aws.gpuWorker.spot.maxPriceUsdPerHour: {float(cap)} is below the current spot "
        "price of g4dn.xlarge in us-west-2a (0.5500 USD/h): a new request stays unfulfilled "
        "(price-too-low) until the price falls; raise the cap, leave it unset (capped at the "
        "on-demand price), or use market: on-demand"
    ]
    # A warning, not an error: a running worker's unrelated up is not blocked by a price spike.
    assert run.one("aws:ec2/spotInstanceRequest:SpotInstanceRequest", "gpu-worker-spot")


# --- network -----------------------------------------------------------------------------------


def test_no_rule_opens_tcp_or_all_protocols_to_the_internet(aws_gpu_run: StackRun) -> None:
    for rule in aws_gpu_run.by_type(INGRESS):
        inputs = rule.plain_inputs
        world = inputs.get("cidrIpv4") == "0.0.0.0/0" or inputs.get("cidrIpv6") == "::/0"
        if world:
            assert inputs["ipProtocol"] not in ("tcp", "-1", "all", "6"), rule.name
    groups = aws_gpu_run.by_type("aws:ec2/securityGroup:SecurityGroup")
    assert groups
    assert all(not g.plain_inputs.get("ingress") for g in groups)  # rules are separate resources


def test_inbound_is_nebula_from_anywhere_admin_per_cidr_and_k3s_inside_the_group(
    aws_gpu_run: StackRun,
) -> None:
    # The example config administers over the mesh: no admin range opens SSH or 6443
    # (tests/test_operator_mesh.py runs the stack with adminCidrs).
    admin = {str(ipaddress.IPv4Network(c)) for c in _aws_config().get("adminCidrs", [])}
    assert not admin
    rules = [r.plain_inputs for r in aws_gpu_run.by_type(INGRESS)]
    outside = [r for r in rules if "cidrIpv4" in r]
    nebula = [r for r in outside if r["ipProtocol"] == "udp"]
    assert [(r["fromPort"], r["toPort"], r["cidrIpv4"]) for r in nebula] == [
        (4242, 4242, "0.0.0.0/0")
    ]
    tcp = [r for r in outside if r["ipProtocol"] == "tcp"]
    for port in (22, 6443):
        on_port = [r for r in tcp if (r["fromPort"], r["toPort"]) == (port, port)]
        assert sorted(r["cidrIpv4"] for r in on_port) == sorted(admin), port
    assert len(outside) == 1 + 2 * len(admin)
    (group,) = aws_gpu_run.by_type("aws:ec2/securityGroup:SecurityGroup")
    inside = {(r["ipProtocol"], r["fromPort"]) for r in rules if "referencedSecurityGroupId" in r}
    # k3s between the nodes on the VPC: API, kubelet, flannel VXLAN, and the node exporter the
    # control node's NodePort forwards to on the worker; nothing else.
    assert inside == {("tcp", 6443), ("tcp", 10250), ("udp", 8472), ("tcp", 9100)}
    assert group.urn
    (egress,) = [r.plain_inputs for r in aws_gpu_run.by_type(EGRESS)]
    assert (egress["ipProtocol"], egress["cidrIpv4"]) == ("-1", "0.0.0.0/0")


def test_public_subnet_without_nat_gateway(aws_gpu_run: StackRun) -> None:
    subnet = aws_gpu_run.one("aws:ec2/subnet:Subnet", "network-public").plain_inputs
    assert subnet["mapPublicIpOnLaunch"] is True
    assert subnet["cidrBlock"] == "10.100.1.0/24"
    vpc = aws_gpu_run.one("aws:ec2/vpc:Vpc", "network-vpc").plain_inputs
    assert vpc["enableDnsSupport"] is True
    assert vpc["enableDnsHostnames"] is True
    assert not aws_gpu_run.by_type("aws:ec2/natGateway:NatGateway")
    (table,) = [r.plain_inputs for r in aws_gpu_run.by_type("aws:ec2/routeTable:RouteTable")]
    assert [route["cidrBlock"] for route in table["routes"]] == ["0.0.0.0/0"]
    assert table["routes"][0]["gatewayId"].startswith("network-igw")


# --- bucket and IAM ----------------------------------------------------------------------------


def _by_parent(run: StackRun, typ: str, parent_name: str) -> Registration:
    (reg,) = [r for r in run.by_type(typ) if r.parent.endswith(f"::{parent_name}")]
    return reg


def test_model_bucket_is_private_encrypted_versioned_and_tls_only(aws_gpu_run: StackRun) -> None:
    config = _aws_config()["modelBucket"]
    bucket = aws_gpu_run.one(BUCKET, "models-bucket").plain_inputs
    assert bucket["bucketPrefix"] == f"{config['namePrefix']}-"
    assert bucket["forceDestroy"] is False
    block = _by_parent(
        aws_gpu_run, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", "models"
    )
    assert all(
        block.plain_inputs[k] is True
        for k in (
            "blockPublicAcls",
            "blockPublicPolicy",
            "ignorePublicAcls",
            "restrictPublicBuckets",
        )
    )
    ownership = _by_parent(
        aws_gpu_run, "aws:s3/bucketOwnershipControls:BucketOwnershipControls", "models"
    )
    assert ownership.plain_inputs["rule"] == {"objectOwnership": "BucketOwnerEnforced"}
    sse = _by_parent(
        aws_gpu_run,
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
        "models",
    ).plain_inputs["rules"][0]
    assert sse["applyServerSideEncryptionByDefault"]["sseAlgorithm"] in ("AES256", "aws:kms")
    assert sse["bucketKeyEnabled"] is True
    versioning = _by_parent(aws_gpu_run, "aws:s3/bucketVersioning:BucketVersioning", "models")
    assert versioning.plain_inputs["versioningConfiguration"] == {"status": "Enabled"}
    lifecycle = _by_parent(
        aws_gpu_run, "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration", "models"
    )
    (rule,) = lifecycle.plain_inputs["rules"]
    assert rule["status"] == "Enabled"
    expiration = rule["noncurrentVersionExpiration"]["noncurrentDays"]
    assert expiration == config["noncurrentVersionExpirationDays"]
    abort = rule["abortIncompleteMultipartUpload"]["daysAfterInitiation"]
    assert abort == config["abortIncompleteUploadDays"]
    assert versioning.urn in lifecycle.dependencies
    policy = _by_parent(aws_gpu_run, "aws:s3/bucketPolicy:BucketPolicy", "models")
    statement = json.loads(policy.plain_inputs["policy"])["Statement"][0]
    assert statement["Effect"] == "Deny"
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    # The policy component waits for the public-access block (S3 rejects concurrent changes).
    (component,) = [r for r in aws_gpu_run.registrations if r.urn == policy.parent]
    assert block.urn in component.dependencies


GPU_WAKER_POLICY = "gpu-waker-power"
"""The control node's EC2 power over the worker: tests/test_gpu_waker.py checks it."""


def _policy_documents(run: StackRun) -> Iterator[tuple[Registration, dict[str, Any]]]:
    for reg in run.by_type(ROLE_POLICY):
        if reg.name in (
            GPU_WAKER_POLICY,
            WAKE_START_POLICY,
        ):  # tests/test_gpu_waker.py, test_wake_gate.py
            continue
        yield reg, json.loads(reg.plain_inputs["policy"])
    for reg in run.by_type("aws:s3/bucketPolicy:BucketPolicy"):
        yield reg, json.loads(reg.plain_inputs["policy"])


def test_policies_name_only_the_models_prefix_and_the_nodes_own_parameters(
    aws_gpu_run: StackRun,
) -> None:
    arn = aws_gpu_run.exports["modelBucketArn"]
    assert arn.startswith("arn:aws:s3:::hybridgpu-models-")
    prefix = "arn:aws:ssm:us-west-2:123456789012:parameter/hybridgpu/aws-gpu"
    for reg, document in _policy_documents(aws_gpu_run):
        for statement in document["Statement"]:
            if "NotResource" in statement:
                # Only the bucket's write deny ("everything but the stack's own markers").
                assert statement["Effect"] == "Deny", reg.name
                assert reg.type == "aws:s3/bucketPolicy:BucketPolicy", reg.name
                continue
            resources = statement["Resource"]
            resources = [resources] if isinstance(resources, str) else resources
            assert "*" not in resources, reg.name
            if reg.type == ROLE_POLICY and reg.name.endswith("-node-files"):
                role = reg.name.removesuffix("-node-files")
                assert set(resources) == {f"{prefix}/{role}", f"{prefix}/{role}/*"}
            elif reg.parent_type == "hybridgpu:aws:BackupBucket":  # tests/test_backups.py
                backups = aws_gpu_run.exports["etcdBackup"]["bucket"]
                assert set(resources) <= {f"arn:aws:s3:::{backups}", f"arn:aws:s3:::{backups}/*"}
            else:
                assert set(resources) <= {arn, f"{arn}/*", f"{arn}/ollama/*"}, reg.name


def test_gpu_worker_reads_models_and_the_control_node_gets_no_s3(aws_gpu_run: StackRun) -> None:
    arn = aws_gpu_run.exports["modelBucketArn"]
    (policy,) = [p for p in aws_gpu_run.by_type(ROLE_POLICY) if p.name.endswith("-model-read")]
    assert policy.parent.endswith("hybridgpu:aws:NodeRole::gpu-worker")
    waker = json.loads(aws_gpu_run.one(ROLE_POLICY, GPU_WAKER_POLICY).plain_inputs["policy"])
    assert not [s for s in waker["Statement"] if "s3" in json.dumps(s["Action"])]
    allowed = {
        (s["Action"], s["Resource"])
        for s in json.loads(policy.plain_inputs["policy"])["Statement"]
        if s["Effect"] == "Allow"
    }
    assert allowed == {("s3:ListBucket", arn), ("s3:GetObject", f"{arn}/ollama/*")}
    for role in aws_gpu_run.by_type("aws:iam/role:Role"):
        trust = json.loads(role.plain_inputs["assumeRolePolicy"])
        if role.name == "model-uploader-role":  # people, not instances (test_model_access.py)
            assert trust["Statement"][0]["Principal"] == {"AWS": ["arn:aws:iam::123456789012:root"]}
            continue
        if role.name == "wake-access-role":  # the homelab's gate (tests/test_wake_gate.py)
            assert trust["Statement"][0]["Principal"] == {"Service": "rolesanywhere.amazonaws.com"}
            continue
        assert trust["Statement"][0]["Principal"] == {"Service": "ec2.amazonaws.com"}
        assert "inlinePolicies" not in role.plain_inputs
        assert "managedPolicyArns" not in role.plain_inputs
    assert not aws_gpu_run.by_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")


# --- tags, providers, structure ----------------------------------------------------------------


def _aws_class(token: str) -> type:
    _, module_path, name = token.split(":")
    return getattr(getattr(aws, module_path.split("/")[0]), name)


def _expected_role(reg: Registration) -> str:
    component = reg.parent_type
    if component in ROLE_BY_COMPONENT:
        return ROLE_BY_COMPONENT[component]
    if component == "hybridgpu:aws:SecureParameters":
        return "mesh" if reg.name.startswith("mesh") else reg.name.split("-files")[0]
    assert component in ("hybridgpu:aws:K3sNode", "hybridgpu:aws:NodeRole"), reg.urn
    return next(role for role in NODE_ROLES if reg.name.startswith(role))


def test_every_taggable_aws_resource_has_its_role_tag(aws_gpu_run: StackRun) -> None:
    tagged = 0
    for reg in _aws_resources(aws_gpu_run):
        if "tags" not in inspect.signature(_aws_class(reg.type)._internal_init).parameters:
            continue
        assert reg.plain_inputs.get("tags", {}).get("Role") == _expected_role(reg), reg.urn
        tagged += 1
    assert tagged >= 20
    for instance in aws_gpu_run.by_type(INSTANCE):  # EBS is billed while an instance is stopped
        assert instance.plain_inputs["rootBlockDevice"]["tags"]["Role"] in NODE_ROLES


def test_provider_default_tags_carry_project_and_stack(aws_gpu_run: StackRun) -> None:
    (provider,) = aws_gpu_run.by_type("pulumi:providers:aws")
    inputs = provider.plain_inputs
    tags = json.loads(inputs["defaultTags"])["tags"]
    assert tags["Project"] == "hybridgpu"
    assert tags["Stack"] == "aws-gpu"
    assert inputs["region"] == _aws_config()["region"]
    for reg in _aws_resources(aws_gpu_run):
        assert reg.provider.startswith(provider.urn), f"{reg.urn} uses another provider"


def test_every_aws_resource_sits_in_a_component(aws_gpu_run: StackRun) -> None:
    for reg in _aws_resources(aws_gpu_run):
        assert reg.parent_type.startswith("hybridgpu:"), reg.urn


def test_components_never_read_config() -> None:
    for path in (offline.REPO_ROOT / "components").glob("*.py"):
        assert "pulumi.Config" not in path.read_text(), path


def test_budget_alerts_on_each_threshold_and_the_forecast(aws_gpu_run: StackRun) -> None:
    config = _aws_config()["budget"]
    budgets = {r.name: r.plain_inputs for r in aws_gpu_run.by_type("aws:budgets/budget:Budget")}
    assert set(budgets) == {"monthly-budget", "account-budget"}
    # The backstop has no filter: it counts before the cost tag is activated, and orphans too.
    assert "costFilters" not in budgets["account-budget"]
    assert budgets["account-budget"]["limitAmount"] == f"{float(config['monthlyLimitUsd']):.2f}"
    budget = budgets["monthly-budget"]
    assert (budget["budgetType"], budget["timeUnit"]) == ("COST", "MONTHLY")
    assert budget["limitAmount"] == f"{float(config['monthlyLimitUsd']):.2f}"
    assert budget["limitUnit"] == "USD"
    assert budget["costFilters"] == [{"name": "TagKeyValue", "values": ["user:Project$hybridgpu"]}]
    actual = [n for n in budget["notifications"] if n["notificationType"] == "ACTUAL"]
    assert sorted(n["threshold"] for n in actual) == sorted(config["thresholdsPercent"])
    (forecast,) = [n for n in budget["notifications"] if n["notificationType"] == "FORECASTED"]
    assert forecast["threshold"] == 100
    for notification in budget["notifications"]:
        assert notification["thresholdType"] == "PERCENTAGE"
        assert notification["comparisonOperator"] == "GREATER_THAN"
        assert notification["subscriberEmailAddresses"] == config["emails"]


# --- secrets -----------------------------------------------------------------------------------


def test_k3s_tokens_are_secret_everywhere_and_agents_get_the_agent_token(
    aws_gpu_run: StackRun,
) -> None:
    token = _token(aws_gpu_run)
    assert len(token) == 48
    assert token.isalnum()
    agent_token = parameter(aws_gpu_run, "/hybridgpu/aws-gpu/gpu-worker/files/k3s/agent-token")
    server_copy = parameter(aws_gpu_run, "/hybridgpu/aws-gpu/control-node/files/k3s/agent-token")
    # The worker holds "K10<server CA sha256>::node:<agent password>", never the server token.
    assert agent_token.startswith("K10")
    assert agent_token.endswith(f"::node:{server_copy}")
    assert token not in agent_token
    worker_files = [
        r for r in aws_gpu_run.by_type(PARAMETER) if "/gpu-worker/" in r.plain_inputs["name"]
    ]
    assert all(token not in r.plain_inputs["value"] for r in worker_files)
    passwords = [
        p
        for p in aws_gpu_run.by_type("random:index/randomPassword:RandomPassword")
        if p.name.startswith("k3s-")
    ]
    assert {p.name for p in passwords} == {"k3s-token", "k3s-agent-token"}
    assert all(p.plain_inputs["special"] is False and p.protect for p in passwords)
    for reg in aws_gpu_run.registrations:
        shown = json.dumps(mocks.redact(reg.inputs), default=str)
        assert token not in shown, reg.urn
        assert server_copy not in shown, reg.urn
    public = {k: v for k, v in aws_gpu_run.exports.items() if k not in aws_gpu_run.secret_exports}
    assert token not in json.dumps(public, default=str)


def test_kubeconfig_is_a_secret_export_pointed_at_the_overlay(aws_gpu_run: StackRun) -> None:
    assert "kubeconfig" in aws_gpu_run.secret_exports
    kubeconfig = yaml.safe_load(aws_gpu_run.exports["kubeconfig"])
    assert kubeconfig["clusters"][0]["cluster"]["server"] == "https://10.200.0.1:6443"
    key = kubeconfig["users"][0]["user"]["client-key-data"]
    public = {k: v for k, v in aws_gpu_run.exports.items() if k not in aws_gpu_run.secret_exports}
    assert key not in json.dumps(public, default=str)


def test_kubeconfig_fetch_logs_nothing_pins_the_host_key_and_waits_for_the_node(
    aws_gpu_run: StackRun,
) -> None:
    command = aws_gpu_run.one("command:remote:Command", "control-node-kubeconfig-read")
    assert command.plain_inputs["logging"] == "none"
    assert command.plain_inputs["addPreviousOutputInEnv"] is False
    assert "stdout" in command.additional_secret_outputs
    assert "connection" in command.secret_inputs  # holds the SSH private key
    connection = command.plain_inputs["connection"]
    assert connection["dialErrorLimit"] == DIAL_ERROR_LIMIT
    assert connection["perDialTimeout"] == 10
    assert connection["user"] == _aws_config()["sshUser"]
    # Over the mesh (the example config has operators and no adminCidrs).
    assert connection["host"] == aws_gpu_run.exports["controlNodeOverlayIp"]
    assert connection["hostKey"] == aws_gpu_run.exports["controlNodeSshHostKey"]
    apply = aws_gpu_run.one("command:remote:Command", "control-node-apply")
    assert apply.urn in command.dependencies
    # Read again in every 30-day window (k3s renews its admin certificate at restart).
    assert command.plain_inputs["triggers"][1] == "0"
    assert command.plain_inputs["create"].startswith("set -eu\n")
    assert "cloud-init status --wait" in command.plain_inputs["create"]


@pulumi.runtime.test
def test_kubeconfig_component_output_is_secret_and_rewritten() -> pulumi.Output[Any]:
    fetch = KubeconfigFetch(
        "unit-kubeconfig",
        KubeconfigFetchArgs(
            host="192.0.2.10",
            user="ubuntu",
            private_key=pulumi.Output.secret("key"),
            server_url="https://10.200.9.9:6443",
            instance_id="i-0123",
        ),
    )

    def check(values: list[Any]) -> None:
        text, is_secret = values
        assert is_secret
        assert yaml.safe_load(text)["clusters"][0]["cluster"]["server"] == (
            "https://10.200.9.9:6443"
        )

    return pulumi.Output.all(
        fetch.kubeconfig, pulumi.Output.from_input(fetch.kubeconfig.is_secret())
    ).apply(check)


# --- exports -----------------------------------------------------------------------------------


def test_exports_match_the_contract_and_the_config(aws_gpu_run: StackRun) -> None:
    declared = {spec.name: spec for spec in outputs.AWS_GPU_OUTPUTS}
    assert set(aws_gpu_run.exports) == set(declared)
    for name, spec in declared.items():
        assert (name in aws_gpu_run.secret_exports) == spec.secret, name
    exports = aws_gpu_run.exports
    config = _aws_config()
    assert exports["controlNodeOverlayIp"] == config["controlNode"]["overlayIp"]
    assert exports["k3sApiEndpoint"] == f"https://{config['controlNode']['overlayIp']}:6443"
    eip = aws_gpu_run.one("aws:ec2/eip:Eip", "control-node-eip")
    assert eip.plain_inputs["domain"] == "vpc"
    ipaddress.IPv4Address(exports["controlNodePublicIp"])
    assert exports["gpuWorkerInstanceId"].startswith("i-")
    assert (exports["gpuWorkerGpuType"], exports["gpuWorkerGpuCount"]) == ("nvidia-t4", 1)
    assert exports["modelBucketArn"] == f"arn:aws:s3:::{exports['modelBucketName']}"
    # The lighthouse is reached on the control node's Elastic IP at the Nebula port.
    assert exports["nebulaLighthouses"] == {
        config["controlNode"]["overlayIp"]: [f"{exports['controlNodePublicIp']}:4242"]
    }
    assert exports["nebulaCaCert"].startswith("-----BEGIN NEBULA CERTIFICATE-----")


# --- real tools on the planned user data -------------------------------------------------------


def test_cloud_init_accepts_the_planned_user_data(aws_gpu_run: StackRun, tmp_path: Path) -> None:
    for role in NODE_ROLES:
        cloud_init_schema(
            node(aws_gpu_run, role).plain_inputs["userData"], tmp_path, f"{role}.yaml"
        )


def test_shellcheck_accepts_the_planned_scripts(aws_gpu_run: StackRun, tmp_path: Path) -> None:
    bash: list[Path] = []
    posix: list[Path] = []
    for role in NODE_ROLES:
        document = yaml.safe_load(node(aws_gpu_run, role).plain_inputs["userData"])
        runcmd = tmp_path / f"{role}-runcmd.sh"
        runcmd.write_text(runcmd_as_shell(document["runcmd"]))
        posix.append(runcmd)
        install = parameter(aws_gpu_run, f"/hybridgpu/aws-gpu/{role}/files/k3s/install")
        path = tmp_path / f"{role}-install-k3s.sh"
        path.write_text(install)
        bash.append(path)
    for name in ("control-node-kubeconfig-read", "control-node-apply"):
        command = aws_gpu_run.one("command:remote:Command", name)
        path = tmp_path / f"{name}.sh"
        path.write_text("#!/bin/sh\n" + command.plain_inputs["create"])
        posix.append(path)
    for shell, paths in (("bash", bash), ("sh", posix)):
        result = run(require("shellcheck"), f"--shell={shell}", *paths, check=False)
        assert result.returncode == 0, result.stdout + result.stderr


# --- gpuWorker.nvidiaDriver ---------------------------------------------------------------------


def test_the_ubuntu_driver_worker_boots_plain_ubuntu_and_installs_before_k3s(
    aws_gpu_run: StackRun, valid_fixture_runs: dict[str, StackRun], tmp_path: Path
) -> None:
    from components.aws import nvidia_driver

    ubuntu = valid_fixture_runs["aws-worker-ubuntu-driver"]
    lookups = [args for token, args in ubuntu.calls if token == "aws:ec2/getAmi:getAmi"]
    assert [a["owners"] for a in lookups] == [["099720109477"]] * 2, "both nodes: Ubuntu"
    assert {a["filters"][0]["values"][0] for a in lookups} == {
        "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*"
    }
    path = "/hybridgpu/aws-gpu/gpu-worker"
    manifest = json.loads(parameter(ubuntu, f"{path}/manifest"))
    files = {f["name"]: f for f in manifest["files"]}
    assert files["nvidia/install"]["path"] == nvidia_driver.SCRIPT_PATH
    assert files["nvidia/install"]["mode"] == "0755"
    # The driver and toolkit are in before the k3s installer first starts the agent.
    assert manifest["run"] == [
        ["systemctl", "enable", "--now", "hybridgpu-imds-guard.service"],
        [nvidia_driver.SCRIPT_PATH],
        ["/usr/local/sbin/hybridgpu-install-k3s"],
    ]
    # Above a standard parameter's 4 KB: stored gzip+base64, in one parameter.
    assert files["nvidia/install"]["encoding"] == "gzip+base64"
    stored = parameter(ubuntu, f"{path}/files/nvidia/install")
    script = gzip.decompress(base64.b64decode(stored)).decode()
    assert script == nvidia_driver.render_install_script(nvidia_driver.NvidiaDriverPins())
    result = run(require("shellcheck"), "--shell=bash", _write(tmp_path, script), check=False)
    assert result.returncode == 0, result.stdout
    # The default worker (the Deep Learning AMI) has neither.
    default = json.loads(parameter(aws_gpu_run, f"{path}/manifest"))
    assert "nvidia/install" not in {f["name"] for f in default["files"]}
    assert [nvidia_driver.SCRIPT_PATH] not in default["run"]
    # The user data is the same bootstrap (already checked by cloud-init's schema above): the
    # install is a node file, so the user data stays under EC2's 16 KB.
    for role in NODE_ROLES:
        assert (
            node(ubuntu, role).plain_inputs["userData"]
            == (node(aws_gpu_run, role).plain_inputs["userData"])
        )


def _write(tmp_path: Path, script: str) -> Path:
    target = tmp_path / "hybridgpu-nvidia-driver.sh"
    target.write_text(script)
    return target
