"""The cluster-level k3s scripts run for real (bash) against a fake ``k3s kubectl``: what each
one asks of the API server, for the states a day-2 change meets (node absent, labels changed,
node drained before, server versus agent)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from components.k3s import scripts
from components.k3s.cluster import render_drain, render_forget, render_membership
from components.k3s.config import K3sClusterSettings, K3sNode, render_install_script

FAKE_K3S = r"""
import json, os, sys
state_path, log_path = os.environ["FAKE_STATE"], os.environ["FAKE_LOG"]
state = json.load(open(state_path))
args = sys.argv[1:]
with open(log_path, "a") as log:
    log.write(json.dumps(args) + "\n")
assert args[0] == "kubectl", args
args = args[1:]
nodes = state.setdefault("nodes", {})
def save():
    json.dump(state, open(state_path, "w"))
if args[:2] == ["apply", "-f"]:
    state["applied"] = sys.stdin.read(); save(); sys.exit(0)
if "secret" in args and "get" in args:
    print(state["token_b64"], end=""); sys.exit(0)
verb = args[0]
if verb == "get" and args[1] == "node":
    name = args[2]
    if name not in nodes:
        print(f'Error from server (NotFound): nodes "{name}" not found', file=sys.stderr)
        sys.exit(1)
    if "-o" in args:
        path = args[args.index("-o") + 1]
        key = path.split(".metadata.annotations.", 1)[1].rstrip("}").replace("\\.", ".")
        print(nodes[name].get("annotations", {}).get(key, ""), end="")
    sys.exit(0)
if verb == "annotate":
    name = args[2]
    for item in args[3:]:
        if item.startswith("--"):
            continue
        notes = nodes[name].setdefault("annotations", {})
        if item.endswith("-") and "=" not in item:
            notes.pop(item[:-1], None)
        else:
            key, _, value = item.partition("=")
            notes[key] = value
            if key == "etcd.k3s.cattle.io/remove":  # what k3s's member controller does
                notes["etcd.k3s.cattle.io/removed-node-name"] = name + "-abc123"
    save()
sys.exit(0)
"""

FAKE_SUDO = r"""
import os, sys
args = sys.argv[1:]
root = os.environ["FAKE_ROOT"]
if args[0] == "k3s":
    os.execvp(sys.executable, [sys.executable, os.environ["FAKE_K3S"], *args[1:]])
args = [root + a if a.startswith("/var/lib/rancher") else a for a in args]
os.execvp(args[0], args)
"""


def _bin(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_k3s = tmp_path / "fake_k3s.py"
    fake_k3s.write_text(FAKE_K3S)
    for name, body in (
        ("sudo", f'#!/bin/sh\nexec {sys.executable} {tmp_path / "fake_sudo.py"} "$@"\n'),
        ("k3s", f'#!/bin/sh\nexec {sys.executable} {fake_k3s} "$@"\n'),
    ):
        (bin_dir / name).write_text(body)
        (bin_dir / name).chmod(0o755)
    (tmp_path / "fake_sudo.py").write_text(FAKE_SUDO)
    return {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "FAKE_STATE": str(tmp_path / "state.json"),
        "FAKE_LOG": str(tmp_path / "calls.log"),
        "FAKE_K3S": str(fake_k3s),
        "FAKE_ROOT": str(tmp_path / "root"),
    }


def run_script(
    script: str, tmp_path: Path, state: dict[str, Any], stdin: str = ""
) -> tuple[subprocess.CompletedProcess[str], list[list[str]], dict[str, Any]]:
    env = _bin(tmp_path)
    Path(env["FAKE_STATE"]).write_text(json.dumps(state))
    path = tmp_path / "script.sh"
    path.write_text(script)
    result = subprocess.run(
        ["bash", str(path)],
        input=stdin,
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=60,
        check=False,
    )
    log = Path(env["FAKE_LOG"])
    calls = [json.loads(line)[1:] for line in log.read_text().splitlines()] if log.exists() else []
    return result, calls, json.loads(Path(env["FAKE_STATE"]).read_text())


AGENT = K3sNode(
    "gpu-1",
    "192.168.10.31",
    "agent",
    labels=("node-type=gpu", "gpu-type=nvidia-h100"),
)
SERVER = K3sNode("cp-2", "192.168.10.22", "server", taints=("role=cp:NoSchedule",))


def test_drain_skips_a_node_not_registered_yet(tmp_path: Path) -> None:
    result, calls, _ = run_script(render_drain(AGENT, "c1"), tmp_path, {"nodes": {}})
    assert result.returncode == 0, result.stderr
    assert [c[0] for c in calls] == ["get"], "nothing but the lookup"


def test_drain_marks_and_drains_a_registered_node(tmp_path: Path) -> None:
    result, calls, state = run_script(render_drain(AGENT, "c1"), tmp_path, {"nodes": {"gpu-1": {}}})
    assert result.returncode == 0, result.stderr
    drain = next(c for c in calls if c[0] == "drain")
    assert drain[1] == "gpu-1"
    assert {"--ignore-daemonsets", "--delete-emptydir-data", "--force"} <= set(drain)
    assert state["nodes"]["gpu-1"]["annotations"]["hybridgpu.io/drained-for"] == "c1"
    assert calls.index(next(c for c in calls if c[0] == "annotate")) < calls.index(drain)


def test_membership_relabels_removes_dropped_keys_and_uncordons_after_a_drain(
    tmp_path: Path,
) -> None:
    state = {
        "nodes": {
            "gpu-1": {
                "annotations": {
                    "hybridgpu.io/managed-labels": "node-type,gpu-type,old-label",
                    "hybridgpu.io/drained-for": "c1",
                }
            }
        }
    }
    result, calls, after = run_script(render_membership(AGENT, "c1"), tmp_path, state)
    assert result.returncode == 0, result.stderr
    label = next(c for c in calls if c[0] == "label")
    assert label[1:3] == ["node", "gpu-1"]
    assert {"node-type=gpu", "gpu-type=nvidia-h100", "old-label-"} <= set(label)
    assert "node-type-" not in label
    notes = after["nodes"]["gpu-1"]["annotations"]
    assert notes["hybridgpu.io/managed-labels"] == "node-type,gpu-type"
    assert ["uncordon", "gpu-1"] in calls
    assert "hybridgpu.io/drained-for" not in notes
    assert any(c[0] == "wait" and "--for=condition=Ready" in c for c in calls)


def test_membership_leaves_a_node_cordoned_by_hand_alone(tmp_path: Path) -> None:
    state = {"nodes": {"gpu-1": {"annotations": {}}}}
    result, calls, _ = run_script(render_membership(AGENT, "c1"), tmp_path, state)
    assert result.returncode == 0, result.stderr
    assert not any(c[0] == "uncordon" for c in calls)


def test_membership_replaces_changed_taints_and_removes_dropped_ones(tmp_path: Path) -> None:
    state = {
        "nodes": {
            "cp-2": {
                "annotations": {
                    "hybridgpu.io/managed-taints": "role=old:NoSchedule,gone:NoExecute",
                }
            }
        }
    }
    result, calls, after = run_script(render_membership(SERVER, "c1"), tmp_path, state)
    assert result.returncode == 0, result.stderr
    taints = [c for c in calls if c[0] == "taint"]
    assert ["taint", "node", "cp-2", "gone:NoExecute-"] in taints
    assert ["taint", "node", "cp-2", "role:NoSchedule-"] not in taints, "a changed value is kept"
    assert ["taint", "node", "cp-2", "--overwrite", "role=cp:NoSchedule"] in taints
    assert after["nodes"]["cp-2"]["annotations"]["hybridgpu.io/managed-taints"] == (
        "role=cp:NoSchedule"
    )


def test_membership_fails_clearly_when_the_node_never_registers(tmp_path: Path) -> None:
    script = scripts.render(
        "membership.sh", NODE_NAME="gpu-9", LABELS="", TAINTS="", WAIT_SECONDS=0, CHANGE="c"
    )
    result, _, _ = run_script(script, tmp_path, {"nodes": {}})
    assert result.returncode == 1
    assert "gpu-9 did not register within 0s" in result.stderr


def test_forget_removes_a_server_from_etcd_before_deleting_it(tmp_path: Path) -> None:
    result, calls, _ = run_script(render_forget(SERVER), tmp_path, {"nodes": {"cp-2": {}}})
    assert result.returncode == 0, result.stderr
    verbs = [c[0] for c in calls]
    remove = next(i for i, c in enumerate(calls) if "etcd.k3s.cattle.io/remove=true" in c)
    assert remove < verbs.index("delete")
    assert calls[verbs.index("delete")][:3] == ["delete", "node", "cp-2"]


def test_forget_deletes_an_agent_without_touching_etcd(tmp_path: Path) -> None:
    result, calls, _ = run_script(render_forget(AGENT), tmp_path, {"nodes": {"gpu-1": {}}})
    assert result.returncode == 0, result.stderr
    assert not any("etcd.k3s.cattle.io/remove=true" in c for c in calls)
    assert ["delete", "node", "gpu-1", "--wait=true"] in calls


def test_forget_is_fine_with_a_node_already_gone(tmp_path: Path) -> None:
    result, calls, _ = run_script(render_forget(AGENT), tmp_path, {"nodes": {}})
    assert result.returncode == 0, result.stderr
    assert not any(c[0] == "delete" for c in calls)


def test_admin_kubeconfig_is_a_bound_service_account_token(tmp_path: Path) -> None:
    ca_dir = tmp_path / "root/var/lib/rancher/k3s/server/tls"
    ca_dir.mkdir(parents=True)
    (ca_dir / "server-ca.crt").write_text("-----BEGIN CERTIFICATE-----\nfake\n")
    script = scripts.render(
        "admin_kubeconfig.sh",
        SERVER_URL="https://192.168.10.20:6443",
        ACCOUNT="hybridgpu-pulumi",
        CLUSTER_NAME="homelab",
    )
    state = {"nodes": {}, "token_b64": "c2VjcmV0LXRva2Vu"}  # "secret-token"
    result, _, after = run_script(script, tmp_path, state)
    assert result.returncode == 0, result.stderr
    kubeconfig = yaml.safe_load(result.stdout)
    assert kubeconfig["kind"] == "Config"
    (cluster,) = kubeconfig["clusters"]
    assert cluster["cluster"]["server"] == "https://192.168.10.20:6443"
    assert cluster["cluster"]["certificate-authority-data"]
    (user,) = kubeconfig["users"]
    assert user["user"] == {"token": "secret-token"}, "a token, no client certificate"
    applied = list(yaml.safe_load_all(after["applied"]))
    secret = next(d for d in applied if d["kind"] == "Secret")
    assert secret["type"] == "kubernetes.io/service-account-token"
    binding = next(d for d in applied if d["kind"] == "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == "cluster-admin"
    assert binding["subjects"][0]["name"] == "hybridgpu-pulumi"


def test_join_token_prints_the_servers_secure_token(tmp_path: Path) -> None:
    token_dir = tmp_path / "root/var/lib/rancher/k3s/server"
    token_dir.mkdir(parents=True)
    (token_dir / "token").write_text("K10abc::server:pw\n")
    result, _, _ = run_script(scripts.render("join_token.sh"), tmp_path, {"nodes": {}})
    assert result.returncode == 0, result.stderr
    assert result.stdout == "K10abc::server:pw\n"


# -- install.sh ------------------------------------------------------------------------------

INSTALL_FAKES = {
    # cloud-init has finished
    "cloud-init": "exit 0",
    # k3s --version prints the installed version (none before the installer ran)
    "k3s": 'cat "$FAKE_ROOT/version" 2>/dev/null || exit 1',
    "systemctl": 'echo "systemctl $*" >>"$FAKE_ROOT/calls"; [ -f "$FAKE_ROOT/version" ]',
    # the installer download: a fake installer that records the version it installs
    "curl": 'out=""; while [ $# -gt 0 ]; do [ "$1" = -o ] && out=$2; shift; done\n'
    'printf \'echo "k3s version $INSTALL_K3S_VERSION" >"$FAKE_ROOT/version"; '
    'echo "installer $INSTALL_K3S_VERSION $INSTALL_K3S_EXEC" >>"$FAKE_ROOT/calls"\\n\' >"$out"',
    # sudo runs the command with /etc/rancher and /var/lib/rancher under FAKE_ROOT
    "sudo": 'args=(); for a in "$@"; do case $a in /etc/rancher*|/var/lib/rancher*) '
    'a=$FAKE_ROOT$a;; esac; args+=("$a"); done; "${args[@]}"',
}


def run_install(script: str, tmp_path: Path, stdin: str = "tok") -> str:
    bin_dir = tmp_path / "install-bin"
    bin_dir.mkdir(exist_ok=True)
    for name, body in INSTALL_FAKES.items():
        (bin_dir / name).write_text(f"#!/bin/bash\n{body}\n")
        (bin_dir / name).chmod(0o755)
    root = tmp_path / "root"
    root.mkdir(exist_ok=True)
    (root / "calls").write_text("")
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_ROOT": str(root)}
    result = subprocess.run(
        ["bash", "-c", script],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return (root / "calls").read_text()


def _install(version: str, node: K3sNode = AGENT, cidr: str = "10.42.0.0/16") -> str:
    settings = K3sClusterSettings(
        version=version,
        api_endpoint="192.168.10.21",
        pod_cidr=cidr,
        service_cidr="10.43.0.0/16",
        cluster_dns="10.43.0.10",
    )
    return render_install_script(node, settings)


def test_install_installs_once_and_restarts_only_on_a_change(tmp_path: Path) -> None:
    server = K3sNode("cp-2", "192.168.10.22", "server")
    first = run_install(_install("v1.33.5+k3s1", server), tmp_path)
    assert "installer v1.33.5+k3s1 server" in first
    root = tmp_path / "root"
    assert (root / "etc/rancher/k3s/cluster-token").read_text() == "tok"
    assert oct((root / "etc/rancher/k3s/cluster-token").stat().st_mode & 0o777) == "0o600"
    again = run_install(_install("v1.33.5+k3s1", server), tmp_path)
    assert "installer" not in again
    assert "restart" not in again, "an unchanged node is not restarted"
    changed = run_install(_install("v1.33.5+k3s1", server, cidr="10.44.0.0/16"), tmp_path)
    assert "systemctl restart k3s" in changed
    assert "installer" not in changed
    new_token = run_install(_install("v1.33.5+k3s1", server, cidr="10.44.0.0/16"), tmp_path, "t2")
    assert "systemctl restart k3s" in new_token
    upgraded = run_install(_install("v1.33.6+k3s1", server, cidr="10.44.0.0/16"), tmp_path, "t2")
    assert "installer v1.33.6+k3s1 server" in upgraded
    assert "restart" not in upgraded, "the installer restarts k3s itself"
