"""``./dev restore`` (tools/restore.py), the scripted restore drill.

etcd: against a loopback moto S3 holding k3s's snapshots (tests/backup_store.py) and a fake
``pulumi`` and ``ssh``: it picks the newest snapshot, prints the exact k3s commands (clean under
shellcheck), and with ``--run`` runs them in order over ssh with the writer's key on stdin only.
namespace: against a loopback Kubernetes API (tests/fake_kube_api.py) answering Velero's
BackupList as the API returns it (tests/fixtures/restore/velero-backups.json): it creates a
Restore of the namespace from the newest Completed backup that holds it, valid for Velero's CRD.
"""

from __future__ import annotations

import copy
import json
import shlex
from pathlib import Path
from typing import Any

import pytest

from tests import backup_store
from tests.backup_store import aws_outputs, fake_pulumi, run_module
from tests.fake_kube_api import FakeApi, kubeconfig
from tests.moto_server import MotoServer
from tests.real_tools import shellcheck
from tests.upstream_checks import custom_resource_problems
from tests.upstream_data import chart_data, find_crd
from tools import restore

RECORDED = json.loads(
    (Path(__file__).parent / "fixtures" / "restore" / "velero-backups.json").read_text()
)["api"]
BACKUPS = f"{restore.VELERO_API}/backups"
RESTORES = f"{restore.VELERO_API}/restores"
NOW = "2026-12-02T09:30:00+00:00"
SERVERS = {"k3s-cp-1": "192.168.10.21", "k3s-cp-2": "192.168.10.22", "k3s-cp-3": "192.168.10.23"}
SECRET = aws_outputs()["etcdBackupSecretAccessKey"]

# --- etcd ----------------------------------------------------------------------------------------


FAKE_SSH = """#!/usr/bin/env python3
import json, os, sys
stdin = sys.stdin.read()
with open(os.environ["SSH_LOG"], "a") as log:
    log.write(json.dumps({"argv": sys.argv[1:], "stdin": stdin}) + "\\n")
sys.exit(1 if os.environ.get("SSH_FAIL") and os.environ["SSH_FAIL"] in sys.argv[-1] else 0)
"""


@pytest.fixture
def env(backup_s3: MotoServer, tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    fake_pulumi(bin_dir, {"aws-gpu": aws_outputs(), "homelab": {"controlPlaneIps": SERVERS}})
    ssh = bin_dir / "ssh"
    ssh.write_text(FAKE_SSH)
    ssh.chmod(0o755)
    return backup_s3.env() | {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "SSH_LOG": str(tmp_path / "ssh.log"),
    }


def ssh_calls(env: dict[str, str]) -> list[dict[str, Any]]:
    path = Path(env["SSH_LOG"])
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def newest_snapshot(env: dict[str, str]) -> str:
    result = run_module("tools.backups", "--newest", env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_etcd_prints_the_exact_k3s_commands_for_the_newest_snapshot(
    env: dict[str, str], tmp_path: Path
) -> None:
    result = run_module("tools.restore", "etcd", env=env)
    assert result.returncode == 0, result.stderr
    snapshot = newest_snapshot(env)
    assert result.stdout.startswith(f"# newest snapshot: {snapshot} ")
    script = result.stdout.split("\n", 1)[1]
    shellcheck(script, tmp_path, "restore-etcd.sh")
    commands = [line for line in script.splitlines() if line and not line.startswith(("#", "set"))]
    assert commands[:3] == [f"ssh ubuntu@{ip} 'sudo systemctl stop k3s'" for ip in SERVERS.values()]
    pipeline, remote = commands[3].split(" | ")
    assert pipeline == (
        "{ pulumi stack output etcdBackupAccessKeyId -s aws-gpu; "
        "pulumi stack output --show-secrets etcdBackupSecretAccessKey -s aws-gpu; }"
    )
    ssh, host, command = shlex.split(remote)
    assert (ssh, host) == ("ssh", "ubuntu@192.168.10.21")
    assert command.startswith("read -r AWS_ACCESS_KEY_ID && read -r AWS_SECRET_ACCESS_KEY && ")
    assert shlex.split(command.split(" k3s server ")[1]) == [
        "--cluster-reset",
        "--etcd-s3",
        f"--etcd-s3-bucket={backup_store.BUCKET}",
        "--etcd-s3-region=us-west-2",
        "--etcd-s3-endpoint=s3.us-west-2.amazonaws.com",
        "--etcd-s3-folder=etcd",
        f"--cluster-reset-restore-path={snapshot}",
    ]
    assert commands[4] == "ssh ubuntu@192.168.10.21 'sudo systemctl start k3s'"
    assert [shlex.split(c)[1] for c in commands[5:]] == [
        "ubuntu@192.168.10.22",
        "ubuntu@192.168.10.23",
    ]
    assert all("sudo mv /var/lib/rancher/k3s/server/db " in c for c in commands[5:])
    assert SECRET not in result.stdout + result.stderr
    assert ssh_calls(env) == []  # printed only


def test_etcd_run_sends_the_key_on_stdin_only_and_keeps_the_order(env: dict[str, str]) -> None:
    result = run_module("tools.restore", "etcd", "--run", env=env)
    assert result.returncode == 0, result.stderr
    calls = ssh_calls(env)
    hosts = [c["argv"][0] for c in calls]
    first, others = "ubuntu@192.168.10.21", ["ubuntu@192.168.10.22", "ubuntu@192.168.10.23"]
    assert hosts == [first, *others, first, first, *others]
    reset = calls[3]
    assert "--cluster-reset" in reset["argv"][1]
    assert f"--cluster-reset-restore-path={newest_snapshot(env)}" in reset["argv"][1]
    assert reset["stdin"] == f"AKIAETCDWRITER\n{SECRET}\n"
    for call in calls:
        assert SECRET not in json.dumps(call["argv"])
        if call is not reset:
            assert call["stdin"] == ""
    assert SECRET not in result.stdout + result.stderr


def test_etcd_run_stops_at_the_first_failed_step(env: dict[str, str]) -> None:
    result = run_module("tools.restore", "etcd", "--run", env=env | {"SSH_FAIL": "cluster-reset"})
    assert result.returncode == 1
    assert "step 'reset 192.168.10.21 from" in result.stderr
    calls = ssh_calls(env)
    assert len(calls) == 4  # three stops, the failed reset; nothing started
    assert "--cluster-reset" in calls[-1]["argv"][1]


def test_etcd_resets_only_on_the_cluster_init_server(env: dict[str, str]) -> None:
    """k3s-cp-1 is the first of homelab.controlPlanes in Pulumi.homelab.yaml: the one with
    cluster-init, which would start a new cluster if it rejoined with an empty database."""
    result = run_module("tools.restore", "etcd", "--first", "k3s-cp-2", env=env)
    assert result.returncode != 0
    assert "cluster-init server 'k3s-cp-1'" in result.stderr
    assert ssh_calls(env) == []
    assert run_module("tools.restore", "etcd", "--first", "k3s-cp-1", env=env).returncode == 0


def test_etcd_refuses_an_unknown_first_server(env: dict[str, str]) -> None:
    result = run_module("tools.restore", "etcd", "--first", "k3s-cp-9", env=env)
    assert result.returncode == 1
    assert "--first 'k3s-cp-9' is not a control plane" in result.stderr


# --- namespace (Velero) ---------------------------------------------------------------------------


def run_namespace(serve: Any, tmp_path: Path, api: FakeApi, *args: str) -> tuple[int, FakeApi]:
    config = tmp_path / "kubeconfig"
    config.write_text(kubeconfig(serve(api)))
    code = restore.main(
        ["namespace", *args, "--kubeconfig", str(config), "--now", NOW, "--poll", "0.05"]
    )
    return code, api


def test_namespace_restores_from_the_newest_completed_backup_holding_it(
    serve: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """open-webui: the PartiallyFailed daily of Dec 2 and the newer jupyterhub-only backup are
    passed over; the Completed daily of Dec 1 is the one."""
    code, api = run_namespace(serve, tmp_path, FakeApi(copy.deepcopy(RECORDED)), "open-webui")
    assert code == 0, capsys.readouterr().err
    name = "open-webui-20261202093000"
    assert api.bodies == [restore.render_restore("daily-20261201030000", "open-webui", name)]
    assert api.bodies[0]["spec"]["includedNamespaces"] == ["open-webui"]
    assert (
        "restore open-webui-20261202093000: namespace open-webui from backup daily-20261201030000"
        in capsys.readouterr().out
    )
    # jupyterhub: the newer manual backup of that namespace alone wins.
    code, api = run_namespace(serve, tmp_path, FakeApi(copy.deepcopy(RECORDED)), "jupyterhub")
    assert code == 0
    assert api.bodies[0]["spec"]["backupName"] == "hub-only-20261202080000"


def test_the_restore_object_validates_against_veleros_crd() -> None:
    chart = chart_data("velero", "12.1.0")
    assert chart is not None
    obj = restore.render_restore("daily-20261201030000", "open-webui", "x-1")
    crds = find_crd([chart], obj["apiVersion"], obj["kind"])
    assert crds
    assert custom_resource_problems(obj, crds) == []
    obj["spec"]["namespaces"] = obj["spec"].pop("includedNamespaces")
    assert custom_resource_problems(obj, crds) != []  # the check can fail (a field it lacks)


@pytest.mark.parametrize(("phase", "code"), [("Completed", 0), ("PartiallyFailed", 1)])
def test_wait_follows_the_restore_to_its_end(
    serve: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], phase: str, code: int
) -> None:
    replies = copy.deepcopy(RECORDED)
    replies[f"{RESTORES}/open-webui-20261202093000"] = {
        "apiVersion": "velero.io/v1",
        "kind": "Restore",
        "status": {"phase": phase, "warnings": 2, "errors": 0 if code == 0 else 1},
    }
    result, _ = run_namespace(serve, tmp_path, FakeApi(replies), "open-webui", "--wait")
    assert result == code
    out, err = capsys.readouterr()
    assert f"restore open-webui-20261202093000: {phase} (2 warning(s)" in out
    if code:
        assert "ended PartiallyFailed: `velero restore logs open-webui-20261202093000`" in err


def test_a_namespace_no_backup_holds_fails_and_creates_nothing(
    serve: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, api = run_namespace(serve, tmp_path, FakeApi(copy.deepcopy(RECORDED)), "team-research")
    assert code == 1
    assert api.bodies == []
    assert "no Completed Velero backup holds namespace 'team-research' (5 backup(s)" in (
        capsys.readouterr().err
    )


def test_a_named_backup_must_exist_and_hold_the_namespace(
    serve: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    api = FakeApi(copy.deepcopy(RECORDED))
    code, _ = run_namespace(
        serve, tmp_path, api, "open-webui", "--backup", "hub-only-20261202080000"
    )
    assert code == 1
    assert api.bodies == []
    code, api = run_namespace(
        serve,
        tmp_path,
        FakeApi(copy.deepcopy(RECORDED)),
        "open-webui",
        "--backup",
        "weekly-20261129040000",
    )
    assert code == 0
    assert api.bodies[0]["spec"]["backupName"] == "weekly-20261129040000"
