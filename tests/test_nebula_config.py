"""Rendered Nebula configs: accepted by the real `nebula -test`, least-privilege firewall, and
clear errors for a broken mesh."""

from __future__ import annotations

import base64
import dataclasses
import ipaddress
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from components.nebula import config as nc
from components.nebula import install as inst
from components.nebula import pki
from tests.real_tools import cloud_init_schema, require, run, shellcheck

OVERLAY = ipaddress.IPv4Network("10.200.0.0/16")
LIGHTHOUSES = {"10.200.0.1": ["203.0.113.7:4242"]}
START = datetime(2026, 1, 1, tzinfo=UTC)


def node(name: str, ip: str, groups: tuple[str, ...], role: nc.Role = "host") -> nc.MeshNode:
    return nc.MeshNode(name, ipaddress.IPv4Address(ip), groups, role, config_key=f"test.{name}")


LIGHTHOUSE = node("aws-control", "10.200.0.1", ("lighthouse", "aws"), "lighthouse")
HOMELAB_CP = node("k3s-cp-1", "10.200.1.1", ("homelab",))
HOMELAB_GPU = node("k3s-gpu-1", "10.200.1.11", ("homelab", "liqo-gateway"))
RELAY = node("relay-1", "10.200.0.2", ("aws",), "relay")
LAN = ipaddress.IPv4Network("192.168.10.0/24")
NEVER_DIAL = (ipaddress.IPv4Network("10.42.0.0/16"), ipaddress.IPv4Network(nc.LIQO_EXTERNAL_CIDR))


def _with_pki(tmp_path: Path, mesh_node: nc.MeshNode, settings: nc.MeshSettings) -> Path:
    """Write a config plus real PKI files next to it, as nebula -test needs them."""
    ca = pki.ca_from_seed(bytes(32), "test-ca", START, START + timedelta(days=3650))
    keys = pki.host_keypair_from_seed(bytes([7]) * 32)
    cert = pki.sign_host_cert(
        ca,
        name=mesh_node.name,
        overlay_ip=f"{mesh_node.overlay_ip}/16",
        groups=mesh_node.groups,
        public_key_pem=keys.public_pem,
        not_before=START,
        not_after=START + timedelta(days=3000),
    )
    (tmp_path / "ca.crt").write_text(ca.cert_pem)
    (tmp_path / "host.crt").write_text(cert)
    (tmp_path / "host.key").write_text(keys.private_pem)
    local = nc.MeshSettings(
        overlay_cidr=settings.overlay_cidr,
        mtu=settings.mtu,
        unsafe_routes=settings.unsafe_routes,
        pki_dir=str(tmp_path),
        never_dial=settings.never_dial,
    )
    path = tmp_path / "config.yml"
    path.write_text(nc.render_node_config(mesh_node, local, LIGHTHOUSES, nc.default_policy()))
    return path


@pytest.mark.parametrize(
    ("mesh_node", "routes"),
    [
        (LIGHTHOUSE, ()),
        (RELAY, ()),
        (HOMELAB_GPU, ()),
        (
            HOMELAB_CP,
            (
                nc.UnsafeRoute(
                    ipaddress.IPv4Network("10.52.0.0/16"), ipaddress.IPv4Address("10.200.0.1")
                ),
            ),
        ),
        (dataclasses.replace(HOMELAB_GPU, local_cidr=LAN), ()),
    ],
    ids=["lighthouse", "relay", "host", "host-with-unsafe-routes", "host-with-allow-lists"],
)
def test_real_nebula_accepts_every_rendered_config(
    tmp_path: Path, mesh_node: nc.MeshNode, routes: tuple[nc.UnsafeRoute, ...]
) -> None:
    settings = nc.MeshSettings(overlay_cidr=OVERLAY, unsafe_routes=routes, never_dial=NEVER_DIAL)
    path = _with_pki(tmp_path, mesh_node, settings)
    result = run(require("nebula"), "-test", "-config", path, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    if routes:
        rendered = yaml.safe_load(path.read_text())
        assert rendered["tun"]["unsafe_routes"] == [{"route": "10.52.0.0/16", "via": "10.200.0.1"}]


def _rendered(mesh_node: nc.MeshNode) -> dict:
    text = nc.render_node_config(
        mesh_node, nc.MeshSettings(overlay_cidr=OVERLAY), LIGHTHOUSES, nc.default_policy()
    )
    return yaml.safe_load(text)


def test_roles_lighthouse_relay_host() -> None:
    lighthouse, host = _rendered(LIGHTHOUSE), _rendered(HOMELAB_GPU)
    assert lighthouse["lighthouse"]["am_lighthouse"] is True
    assert lighthouse["lighthouse"]["hosts"] == []
    assert lighthouse["relay"]["am_relay"] is True
    assert lighthouse["static_host_map"] == {}
    assert host["lighthouse"] == {"am_lighthouse": False, "interval": 15, "hosts": ["10.200.0.1"]}
    assert host["relay"] == {"am_relay": False, "use_relays": True, "relays": ["10.200.0.1"]}
    assert host["static_host_map"] == {"10.200.0.1": ["203.0.113.7:4242"]}
    assert host["listen"]["port"] == 4242
    assert host["tun"]["mtu"] == 1300
    assert host["punchy"] == {"punch": True, "respond": True}


def test_hosts_advertise_only_their_network_and_never_dial_pod_ranges() -> None:
    text = nc.render_node_config(
        dataclasses.replace(HOMELAB_GPU, local_cidr=LAN),
        nc.MeshSettings(overlay_cidr=OVERLAY, never_dial=NEVER_DIAL),
        LIGHTHOUSES,
        nc.default_policy(),
    )
    config = yaml.safe_load(text)
    # An all-allow list denies everything else: cni0, flannel and Liqo addresses stay private.
    assert config["lighthouse"]["local_allow_list"] == {"192.168.10.0/24": True}
    # An all-deny list allows the rest (0.0.0.0/0 included, so roaming still works).
    assert config["lighthouse"]["remote_allow_list"] == {
        "10.42.0.0/16": False,
        "10.70.0.0/16": False,
    }
    assert config["preferred_ranges"] == ["192.168.10.0/24"]
    plain = _rendered(HOMELAB_GPU)["lighthouse"]
    assert "local_allow_list" not in plain
    assert "remote_allow_list" not in plain


def _allowed(config: dict, port: int, proto: str, peer_groups: set[str]) -> bool:
    """Nebula's inbound semantics: a rule matching port/proto whose group(s) the peer has."""
    for rule in config["firewall"]["inbound"]:
        if rule["proto"] not in (proto, "any") or rule["port"] not in (port, "any"):
            continue
        if rule.get("host") == "any":
            return True
        needed = set(rule.get("groups", [])) | ({rule["group"]} if "group" in rule else set())
        if needed <= peer_groups:
            return True
    return False


def test_firewall_is_least_privilege() -> None:
    lighthouse, homelab_gpu, homelab_cp = (
        _rendered(LIGHTHOUSE),
        _rendered(HOMELAB_GPU),
        _rendered(HOMELAB_CP),
    )
    homelab = {"homelab"}
    gateway_client = {"homelab", "liqo-gateway"}
    admin = {"admin"}
    aws = {"aws", "lighthouse"}
    outsider = {"relay-only"}
    assert lighthouse["firewall"]["inbound_action"] == "drop"
    # The AWS API: the homelab's Liqo and an operator on the mesh; nobody else.
    assert _allowed(lighthouse, 6443, "tcp", homelab)
    assert _allowed(lighthouse, 6443, "tcp", admin)
    # gpu-waker (the way to Ollama) on the AWS control node: from the homelab only.
    assert _allowed(lighthouse, nc.GPU_WAKER_PORT, "tcp", homelab)
    assert not _allowed(lighthouse, nc.GPU_WAKER_PORT, "tcp", admin | gateway_client - homelab)
    assert not _allowed(lighthouse, 6443, "tcp", outsider)
    # Liqo's gateway: only from nodes that may run its client.
    assert _allowed(lighthouse, nc.LIQO_GATEWAY_NODEPORT, "udp", gateway_client)
    assert not _allowed(lighthouse, nc.LIQO_GATEWAY_NODEPORT, "udp", homelab)
    # SSH over the mesh: operators only.
    assert _allowed(lighthouse, 22, "tcp", admin)
    assert not _allowed(lighthouse, 22, "tcp", homelab)
    # Nothing of the clusters' own traffic crosses: no kubelet, no flannel, no Ollama.
    for port, proto in ((10250, "tcp"), (8472, "udp"), (nc.OLLAMA_PORT, "tcp")):
        assert not _allowed(lighthouse, port, proto, homelab | admin), port
    # Homelab nodes take nothing but ICMP from the mesh (their k3s runs on the LAN), so
    # neither gpu-waker's nor Ollama's port is open there.
    for config in (homelab_gpu, homelab_cp):
        assert config["firewall"]["inbound"] == [{"port": "any", "proto": "icmp", "host": "any"}]
    assert _allowed(homelab_gpu, 0, "icmp", outsider)
    assert not _allowed(homelab_gpu, 6443, "tcp", aws)


def test_validation_names_the_key() -> None:
    settings = nc.MeshSettings(
        overlay_cidr=OVERLAY,
        other_ranges={"homelabPodCidr": ipaddress.IPv4Network("10.200.128.0/17")},
    )
    with pytest.raises(ValueError, match=r"nebulaOverlayCidr: .* overlaps homelabPodCidr"):
        nc.validate_mesh(settings, [LIGHTHOUSE], nc.default_policy())
    ok = nc.MeshSettings(overlay_cidr=OVERLAY)
    outside = node("stray", "10.9.0.1", ("homelab",))
    with pytest.raises(
        ValueError, match=r"test\.stray\.overlayIp: 10\.9\.0\.1 is not a host address"
    ):
        nc.validate_mesh(ok, [LIGHTHOUSE, outside], nc.default_policy())
    twin = node("twin", "10.200.1.11", ("homelab",))
    with pytest.raises(
        ValueError, match=r"test\.twin\.overlayIp: .*already the overlay IP of 'k3s-gpu-1'"
    ):
        nc.validate_mesh(ok, [LIGHTHOUSE, HOMELAB_GPU, twin], nc.default_policy())
    bad_rule = (*nc.default_policy(), nc.FirewallRule(22, "tcp", ("admins",), why="ssh"))
    with pytest.raises(
        ValueError, match=r"firewall rule \[\d+\] \(ssh\): unknown groups \['admins'\]"
    ):
        nc.validate_mesh(ok, [LIGHTHOUSE], bad_rule)
    with pytest.raises(ValueError, match="no lighthouse"):
        nc.validate_mesh(ok, [HOMELAB_GPU], nc.default_policy())
    with pytest.raises(ValueError, match="unknown groups"):
        nc.validate_mesh(
            ok, [LIGHTHOUSE, node("x", "10.200.5.5", ("wizards",))], nc.default_policy()
        )
    nc.validate_mesh(ok, [LIGHTHOUSE, HOMELAB_CP, HOMELAB_GPU, RELAY], nc.default_policy())


FILES = inst.NebulaFiles(
    config_yaml="pki: {}\n",
    ca_pem="-----BEGIN NEBULA CERTIFICATE-----\nAA==\n-----END NEBULA CERTIFICATE-----\n",
    cert_pem="CERT 'quoted' $(not run)\n",
    key_pem="KEY\n",
)


def test_cloud_init_fragment_passes_schema_and_shellcheck(tmp_path: Path) -> None:
    fragment = inst.render_cloud_init_fragment(FILES)
    document = "#cloud-config\n" + yaml.safe_dump(fragment, sort_keys=False, width=1000)
    cloud_init_schema(document, tmp_path)
    modes = {f["path"]: f["permissions"] for f in fragment["write_files"]}
    assert modes["/etc/nebula/host.key"] == "0600"
    assert modes["/etc/nebula/config.yml"] == "0600"
    assert modes["/etc/nebula/ca.crt"] == "0644"
    for entry in fragment["write_files"]:
        if entry["content"].startswith("#!"):
            shellcheck(entry["content"], tmp_path, Path(entry["path"]).name + ".sh")
    commands = "\n".join(" ".join(c) if isinstance(c, list) else c for c in fragment["runcmd"])
    shellcheck(commands, tmp_path, "runcmd.sh")
    assert inst.NEBULA_SHA256 in inst.BINARY_INSTALL
    assert inst.NEBULA_VERSION in inst.BINARY_INSTALL


def _sandboxed_apply_script(root: Path) -> tuple[str, Path]:
    """The SSH apply script with its paths moved under ``root`` and systemctl replaced by a
    recorder (the real script, otherwise unchanged)."""
    log = root / "systemctl.log"
    fake_bin = root / "bin"
    fake_bin.mkdir(parents=True)
    (fake_bin / "systemctl").write_text(f'#!/bin/sh\necho "$*" >> {log}\n')
    (fake_bin / "systemctl").chmod(0o755)
    # The installer downloads the release: it is written (and compared) like every file, but
    # not run here.
    assert f"\n{inst.INSTALL_SCRIPT_PATH}\n" in inst.APPLY_SCRIPT
    script = inst.APPLY_SCRIPT.replace(f"\n{inst.INSTALL_SCRIPT_PATH}\n", "\ntrue\n")
    script = script.replace(inst.ETC_DIR, str(root / "etc"))
    script = script.replace(inst.UNIT_PATH, str(root / "nebula.service"))
    script = script.replace(inst.INSTALL_SCRIPT_PATH, str(root / "install-nebula"))
    script = script.replace("-o root -g root ", "")
    return f"export PATH={fake_bin}:$PATH\n{script}", log


def test_ssh_apply_script_takes_files_from_stdin_exactly_and_restarts_only_on_change(
    tmp_path: Path,
) -> None:
    shellcheck(inst.APPLY_SCRIPT, tmp_path, "apply.sh")
    shellcheck(inst.render_ssh_uninstall_script(), tmp_path, "uninstall.sh")
    assert "set -x" not in inst.APPLY_SCRIPT
    bundle = inst.render_stdin_bundle(FILES)
    assert "KEY" not in bundle  # contents travel base64-encoded
    script, log = _sandboxed_apply_script(tmp_path)
    first = run("bash", "-c", script, input=bundle)
    assert "nebula: active" in first.stdout
    etc = tmp_path / "etc"
    assert (etc / "host.crt").read_text() == FILES.cert_pem
    assert (etc / "host.key").read_text() == FILES.key_pem
    assert (etc / "host.key").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "nebula.service").read_text() == inst.SYSTEMD_UNIT
    assert (tmp_path / "install-nebula").read_text() == inst.BINARY_INSTALL
    assert "restart nebula.service" in log.read_text()
    log.unlink()
    run("bash", "-c", script, input=bundle)
    assert "restart" not in log.read_text(), "unchanged files must not restart Nebula"
    log.unlink()
    changed = inst.NebulaFiles(**{**FILES.__dict__, "cert_pem": "NEW CERT\n"})
    run("bash", "-c", script, input=inst.render_stdin_bundle(changed))
    assert "restart nebula.service" in log.read_text()
    assert (etc / "host.crt").read_text() == "NEW CERT\n"


def test_ssh_apply_script_refuses_a_file_it_does_not_know(tmp_path: Path) -> None:
    script, _ = _sandboxed_apply_script(tmp_path)
    evil = "authorized_keys 0600 " + base64.b64encode(b"ssh-ed25519 AAAA").decode() + "\n"
    result = run("bash", "-c", script, input=evil, check=False)
    assert result.returncode == 2
    assert "refusing unexpected file 'authorized_keys'" in result.stderr


def test_as_root_passes_the_script_verbatim_and_keeps_stdin_for_data() -> None:
    inner = "#!/bin/bash\nset -euo pipefail\nx='$HOME `id`'\nprintf '%s\\n' \"$x\"\ncat\n"
    wrapped = inst.as_root(inner, "demo")
    assert wrapped.startswith("sudo bash -c ")
    # Same shell mechanics without sudo: the quoted script reaches bash unexpanded, and the
    # command's stdin reaches the script.
    result = run("bash", "-c", wrapped.removeprefix("sudo "), input="from stdin\n")
    assert result.stdout == "$HOME `id`\nfrom stdin\n"
