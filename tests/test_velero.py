"""Velero in the homelab (issue #22), on the shared recorded runs: the release of the pinned chart
with node-agent and the pinned AWS plugin, its storage location in the aws-gpu backup bucket under
``velero/``, one Schedule per configured entry (cron, TTL, namespaces), its own key as a Secret,
the namespace's Pod Security level with its reason, and the opt-in annotations on the three data
sets. Chart values go through the upstream tier (tests/test_upstream_charts.py), the objects
through tests/test_kubernetes_objects.py and checkov like every other one."""

from __future__ import annotations

import json
from typing import Any

import pytest

from components.k3s.pod_security import ENFORCE_LABEL, REASON_ANNOTATION
from components.kube.charts import VELERO, VELERO_PLUGIN_FOR_AWS_IMAGE
from components.kube.labels import VELERO_BACKUP_VOLUMES
from components.platform import velero
from stacks.backups import VELERO_FOLDER
from tests.upstream_checks import custom_resource_problems
from tests.upstream_data import chart_data, find_crd, plain_object
from tools import offline
from tools.offline import StackRun

RELEASE = "kubernetes:helm.sh/v3:Release"


def _inputs(run: StackRun, typ: str, name: str) -> dict[str, Any]:
    return run.one(typ, name).plain_inputs


def _homelab_velero() -> dict[str, Any]:
    return offline.stack_config_file("homelab")["hybridgpu:homelab"]["backups"]["velero"]


def test_the_plan_lists_the_release_and_its_schedules(homelab_run: StackRun) -> None:
    release = _inputs(homelab_run, RELEASE, "velero-release")
    assert (release["chart"], release["version"]) == (VELERO.chart, VELERO.version)
    assert release["repositoryOpts"]["repo"] == VELERO.repo
    assert release["namespace"] == velero.NAMESPACE
    values = release["values"]
    assert values["deployNodeAgent"] is True
    assert values["configuration"]["uploaderType"] == "kopia"
    assert values["snapshotsEnabled"] is False
    (plugin,) = values["initContainers"]
    assert plugin["image"] == VELERO_PLUGIN_FOR_AWS_IMAGE
    assert VELERO_PLUGIN_FOR_AWS_IMAGE.startswith("docker.io/velero/velero-plugin-for-aws:v1.14.")
    schedules = {
        r.name.removeprefix("velero-schedule-"): r.plain_inputs
        for r in homelab_run.by_type("kubernetes:velero.io/v1:Schedule")
    }
    configured = _homelab_velero()["schedules"]
    assert sorted(schedules) == sorted(s["name"] for s in configured)
    for entry in configured:
        schedule = schedules[entry["name"]]
        assert schedule["metadata"] == {"name": entry["name"], "namespace": velero.NAMESPACE}
        spec = schedule["spec"]
        assert spec["schedule"] == entry["scheduleCron"]
        template = spec["template"]
        assert template["ttl"] == f"{entry['retentionDays'] * 24}h0m0s"
        assert template["includedNamespaces"] == entry["namespaces"]
        assert template["storageLocation"] == velero.STORAGE_LOCATION
        assert template["defaultVolumesToFsBackup"] is False  # opt-in volumes
        # The objects wait for the release that brings their CRDs.
        assert any(d.endswith("::velero-release") for d in homelab_run.one(
            "kubernetes:velero.io/v1:Schedule", f"velero-schedule-{entry['name']}"
        ).dependencies)  # fmt: skip


def test_the_storage_location_is_the_aws_backup_bucket_under_velero(
    aws_gpu_run: StackRun, homelab_run: StackRun
) -> None:
    target = aws_gpu_run.exports["veleroBackup"]
    assert target["prefix"] == VELERO_FOLDER
    assert target["bucket"] == aws_gpu_run.exports["etcdBackup"]["bucket"]
    location = _inputs(
        homelab_run, "kubernetes:velero.io/v1:BackupStorageLocation", "velero-storage-location"
    )
    spec = location["spec"]
    assert spec["objectStorage"] == {"bucket": target["bucket"], "prefix": VELERO_FOLDER}
    assert spec["config"] == {"region": aws_gpu_run.exports["region"]}
    assert spec["default"] is True
    assert spec["credential"] == {"name": velero.CREDENTIALS_SECRET, "key": "cloud"}


def test_velero_gets_its_own_key_as_a_secret_and_no_command_carries_it(
    aws_gpu_run: StackRun, homelab_run: StackRun
) -> None:
    secret = _inputs(homelab_run, "kubernetes:core/v1:Secret", "velero-credentials")
    key_id = aws_gpu_run.exports["veleroBackupAccessKeyId"]
    key = aws_gpu_run.exports["veleroBackupSecretAccessKey"]
    assert "veleroBackupSecretAccessKey" in aws_gpu_run.secret_exports
    assert key_id != aws_gpu_run.exports["etcdBackupAccessKeyId"]
    assert secret["stringData"]["cloud"] == velero.credentials_file(key_id, key)
    release = _inputs(homelab_run, RELEASE, "velero-release")
    assert release["values"]["credentials"] == {
        "useSecret": True,
        "existingSecret": velero.CREDENTIALS_SECRET,
    }
    assert key not in json.dumps(release)
    for run in (aws_gpu_run, homelab_run):
        for reg in run.by_type("command:remote:Command"):
            assert key not in json.dumps(reg.plain_inputs), reg.name


def test_the_namespace_is_privileged_with_its_reason(homelab_run: StackRun) -> None:
    namespace = _inputs(homelab_run, "kubernetes:core/v1:Namespace", "velero-namespace")
    assert namespace["metadata"]["labels"][ENFORCE_LABEL] == "privileged"
    reason = namespace["metadata"]["annotations"][REASON_ANNOTATION]
    assert "hostPath" in reason
    assert velero.KUBELET_PODS in reason


def test_the_node_agent_is_as_hardened_as_it_can_be_and_says_why_not_more(
    homelab_run: StackRun,
) -> None:
    agent = _inputs(homelab_run, RELEASE, "velero-release")["values"]["nodeAgent"]
    context = agent["containerSecurityContext"]
    assert context["allowPrivilegeEscalation"] is False
    assert context["readOnlyRootFilesystem"] is True
    assert context["capabilities"] == {
        "drop": ["ALL"],
        "add": ["CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID"],
    }
    assert "privileged" not in context
    skips = {v.split("=", 1)[0]: v.split("=", 1)[1] for v in agent["annotations"].values()}
    assert sorted(skips) == ["CKV_K8S_23", "CKV_K8S_37", "CKV_K8S_40"]
    assert all(len(reason) > 20 for reason in skips.values())
    server = _inputs(homelab_run, RELEASE, "velero-release")["values"]
    assert server["containerSecurityContext"]["runAsNonRoot"] is True
    assert server["initContainers"][0]["securityContext"]["runAsNonRoot"] is True


def test_the_three_data_sets_opt_their_volumes_in(homelab_run: StackRun) -> None:
    hub = _inputs(homelab_run, RELEASE, "jupyterhub-release")["values"]["singleuser"]
    template = hub["storage"].get("dynamic", {}).get("volumeNameTemplate", "volume-{user_server}")
    assert hub["extraAnnotations"] == {VELERO_BACKUP_VOLUMES: template}
    grafana = _inputs(homelab_run, RELEASE, "monitoring-release")["values"]["grafana"]
    assert grafana["podAnnotations"] == {VELERO_BACKUP_VOLUMES: "storage"}
    deployment = _inputs(homelab_run, "kubernetes:apps/v1:Deployment", "open-webui-deployment")
    pod = deployment["spec"]["template"]
    assert pod["metadata"]["annotations"] == {VELERO_BACKUP_VOLUMES: "data"}
    assert "data" in {v["name"] for v in pod["spec"]["volumes"] if "persistentVolumeClaim" in v}
    claim = _inputs(homelab_run, "kubernetes:core/v1:PersistentVolumeClaim", "open-webui-data")
    # Velero skips hostPath volumes; a local-path "local" volume is mounted under the kubelet.
    assert claim["metadata"]["annotations"] == {"volumeType": "local"}
    namespaces = {ns for s in _homelab_velero()["schedules"] for ns in s["namespaces"]}
    assert {"jupyterhub", "open-webui", "monitoring"} <= namespaces


def test_schedules_and_location_validate_against_veleros_crds(homelab_run: StackRun) -> None:
    chart = chart_data(VELERO.chart, VELERO.version)
    assert chart is not None
    checked = 0
    for typ in ("Schedule", "BackupStorageLocation"):
        for reg in homelab_run.by_type(f"kubernetes:velero.io/v1:{typ}"):
            obj = plain_object(reg)
            crds = find_crd([chart], obj["apiVersion"], typ)
            assert crds, typ
            assert custom_resource_problems(obj, crds) == [], reg.name
            checked += 1
    assert checked == 1 + len(_homelab_velero()["schedules"])
    bad = velero.render_schedule(velero.VeleroSchedule("x", "0 3 * * *", 1, ("a",)))
    bad["spec"]["template"]["ttl"] = 24
    assert custom_resource_problems(bad, find_crd([chart], "velero.io/v1", "Schedule"))


@pytest.mark.parametrize("enabled", [False])
def test_velero_can_be_turned_off(enabled: bool) -> None:
    from stacks.backups import homelab_velero
    from stacks.config import parse_homelab, parse_project

    raw = offline.stack_config_file("homelab")["hybridgpu:homelab"]
    raw = {**raw, "backups": {**raw["backups"], "velero": {"enabled": enabled}}}
    homelab = parse_homelab(parse_project({}), raw)
    assert homelab_velero(homelab, aws_gpu=None, opts=None) is None  # type: ignore[arg-type]


def test_renderers_refuse_what_velero_would_misread() -> None:
    with pytest.raises(ValueError, match="retention_days must be at least 1"):
        velero.VeleroSchedule("daily", "0 3 * * *", 0, ("a",))
    with pytest.raises(ValueError, match="backs up no namespace"):
        velero.VeleroSchedule("daily", "0 3 * * *", 1, ())
    assert velero.ttl(14) == "336h0m0s"
