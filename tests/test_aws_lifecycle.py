"""Day 2 on AWS, as a real `pulumi up` would play it: the program run for config A, then B, and
the difference read from the recorded registrations (inputs, ignore_changes, dependencies).

What an instance input change does (terraform-provider-aws, behind pulumi-aws 7): ``ami``,
``keyName``, ``subnetId``, ``privateIp``, market options force a replacement; ``userData`` and
``instanceType`` stop and start the instance; a spot request's launch settings replace it. So on an
ordinary change none of them may change unless ignored."""

from __future__ import annotations

import json
from typing import Any

from tools import offline
from tools.mocks import Registration
from tools.offline import StackRun

NODE_TYPES = ("aws:ec2/instance:Instance", "aws:ec2/spotInstanceRequest:SpotInstanceRequest")
PARAMETER = "aws:ssm/parameter:Parameter"


def _run(**project: Any) -> StackRun:
    return offline.run_stack("aws-gpu", {f"hybridgpu:{k}": v for k, v in project.items()})


def _run_aws(**changes: Any) -> StackRun:
    config = offline.stack_config_file("aws-gpu")["hybridgpu:aws"] | changes
    return offline.run_stack("aws-gpu", {"hybridgpu:aws": config})


def _nodes(run: StackRun) -> dict[str, Registration]:
    return {r.urn: r for typ in NODE_TYPES for r in run.by_type(typ)}


def _effective(reg: Registration) -> dict[str, Any]:
    """The inputs a diff would look at: everything but what the resource ignores."""
    return {k: v for k, v in reg.plain_inputs.items() if k not in reg.ignore_changes}


def assert_no_node_is_touched(a: StackRun, b: StackRun) -> None:
    before, after = _nodes(a), _nodes(b)
    assert set(before) == set(after), "a node would be created or deleted"
    for urn, reg in after.items():
        changed = {
            k
            for k in {*_effective(before[urn]), *_effective(reg)}
            if _effective(before[urn]).get(k) != _effective(reg).get(k)
        }
        assert not changed, f"{reg.name}: {sorted(changed)} would update, stop or replace it"


def _parameter(run: StackRun, name: str) -> str:
    values = [
        r.plain_inputs["value"] for r in run.by_type(PARAMETER) if r.plain_inputs["name"] == name
    ]
    assert len(values) == 1, name
    return values[0]


def _manifest(run: StackRun, node: str) -> dict[str, Any]:
    return json.loads(_parameter(run, f"/hybridgpu/aws-gpu/{node}/manifest"))


def test_a_k3s_version_bump_reaches_both_nodes_server_first_without_touching_them(
    aws_gpu_run: StackRun,
) -> None:
    bumped = _run(k3sVersion="v1.34.1+k3s1")
    assert_no_node_is_touched(aws_gpu_run, bumped)
    for node in ("control-node", "gpu-worker"):
        install = _parameter(bumped, f"/hybridgpu/aws-gpu/{node}/files/k3s/install")
        assert 'readonly version="v1.34.1+k3s1"' in install, node
        assert install != _parameter(aws_gpu_run, f"/hybridgpu/aws-gpu/{node}/files/k3s/install")
    # The server applies now (its apply re-runs) and drains agents for the new version first...
    apply_a = aws_gpu_run.one("command:remote:Command", "control-node-apply")
    apply_b = bumped.one("command:remote:Command", "control-node-apply")
    assert apply_a.plain_inputs["triggers"] != apply_b.plain_inputs["triggers"]
    assert _manifest(bumped, "control-node")["run"][-1] == [
        "/usr/local/sbin/hybridgpu-node",
        "drain-for-upgrade",
        "--version",
        "v1.34.1+k3s1",
    ]
    # ... and the worker's files are published only after it (version skew: servers first).
    worker_files = bumped.one("hybridgpu:aws:NodeFiles", "gpu-worker-files")
    assert apply_b.urn in worker_files.dependencies


def test_renewed_nebula_config_reaches_the_control_node_without_a_stop() -> None:
    a, b = _run(nebulaMtu=1300), _run(nebulaMtu=1340)
    assert_no_node_is_touched(a, b)
    config = "/hybridgpu/aws-gpu/control-node/files/nebula/config.yml"
    assert "mtu: 1340" in _parameter(b, config)
    assert "mtu: 1300" in _parameter(a, config)
    manifest = {f["name"]: f for f in _manifest(b, "control-node")["files"]}
    assert manifest["nebula/config.yml"]["restart"] == ["nebula.service"]


def test_a_new_ssh_key_is_rolled_out_by_the_agent_and_replaces_no_node(
    aws_gpu_run: StackRun,
) -> None:
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIN0tTh3Sam3K3yN0tTh3Sam3K3yN0tTh3Sam3K3yXX new@lab"
    rotated = _run_aws(sshPublicKey=key)
    assert_no_node_is_touched(aws_gpu_run, rotated)
    for node in ("control-node", "gpu-worker"):
        keys = _parameter(rotated, f"/hybridgpu/aws-gpu/{node}/files/ssh/authorized_keys")
        assert keys == key + "\n"
    assert not rotated.by_type("aws:ec2/keyPair:KeyPair"), "a key pair would force a new instance"


def test_switching_the_worker_market_cancels_the_spot_request_with_the_worker(
    aws_gpu_run: StackRun,
) -> None:
    """The spot worker is the spot request resource: deleting it cancels the request before
    terminating the instance (terraform-provider-aws ec2_spot_instance_request.go,
    resourceSpotInstanceRequestDelete), so no open persistent request relaunches an orphan
    (hashicorp/terraform-provider-aws#38142). Going on-demand deletes exactly that resource."""
    worker = offline.stack_config_file("aws-gpu")["hybridgpu:aws"]["gpuWorker"]
    on_demand = _run_aws(gpuWorker=worker | {"market": "on-demand"})
    old = aws_gpu_run.one(NODE_TYPES[1], "gpu-worker-spot")
    assert not on_demand.by_type(NODE_TYPES[1]), "the spot request goes"
    new = on_demand.one(NODE_TYPES[0], "gpu-worker-instance")
    assert "instanceMarketOptions" not in new.plain_inputs
    assert old.type == "aws:ec2/spotInstanceRequest:SpotInstanceRequest"
    # The control node is untouched by the worker's market.
    control_a = aws_gpu_run.one(NODE_TYPES[0], "control-node-instance")
    control_b = on_demand.one(NODE_TYPES[0], "control-node-instance")
    assert _effective(control_a) == _effective(control_b)


def test_a_new_worker_instance_type_replaces_only_the_worker(aws_gpu_run: StackRun) -> None:
    worker = offline.stack_config_file("aws-gpu")["hybridgpu:aws"]["gpuWorker"]
    bigger = _run_aws(gpuWorker=worker | {"instanceType": "g5.xlarge"})
    before, after = _nodes(aws_gpu_run), _nodes(bigger)
    changed = [
        after[urn].name for urn in after if _effective(before[urn]) != _effective(after[urn])
    ]
    assert changed == ["gpu-worker-spot"]


def test_switching_the_nvidia_driver_leaves_a_launched_worker_alone(
    aws_gpu_run: StackRun, valid_fixture_runs: dict[str, StackRun]
) -> None:
    """gpuWorker.nvidiaDriver picks the worker's image, which is ignored after launch like any
    newer AMI (IGNORED_AFTER_LAUNCH): switching it either way touches no instance. What does
    reach the worker is its node files: the install script, which on the Deep Learning AMI
    finds the image's own driver and does nothing (tests/test_nvidia_driver.py); switching back
    drops it and the packages stay. README "Small worker image" says how to rebuild instead."""
    ubuntu = valid_fixture_runs["aws-worker-ubuntu-driver"]
    for a, b in ((aws_gpu_run, ubuntu), (ubuntu, aws_gpu_run)):
        assert_no_node_is_touched(a, b)
    worker_a = aws_gpu_run.one(NODE_TYPES[1], "gpu-worker-spot")
    worker_b = ubuntu.one(NODE_TYPES[1], "gpu-worker-spot")
    # The image did change: only the ignore keeps the worker.
    assert worker_a.plain_inputs["ami"] != worker_b.plain_inputs["ami"]
    assert "ami" in worker_b.ignore_changes
    files = {f["name"] for f in _manifest(ubuntu, "gpu-worker")["files"]}
    assert files - {f["name"] for f in _manifest(aws_gpu_run, "gpu-worker")["files"]} == {
        "nvidia/install"
    }
