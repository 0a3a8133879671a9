"""NebulaCa / NebulaHost under the mocks: secrets stay secret, renewal is wired to state."""

from __future__ import annotations

import ipaddress
import json
from datetime import timedelta

import pulumi
import pulumi_command as command

from components.nebula.ca import NebulaCa, NebulaCaArgs
from components.nebula.config import MeshNode, MeshSettings, default_policy
from components.nebula.host import NebulaHost, NebulaHostArgs
from components.nebula.pki import parse_cert_pem
from tests.conftest import MONITOR
from tools.mocks import redact

SETTINGS = MeshSettings(overlay_cidr=ipaddress.IPv4Network("10.200.0.0/16"))
NODE = MeshNode("k3s-gpu-9", ipaddress.IPv4Address("10.200.1.99"), ("homelab", "kubernetes", "gpu"))


def _registration(name: str):  # type: ignore[no-untyped-def]
    found = [r for r in MONITOR.registrations if r.name == name]
    assert found, f"{name} was not registered"
    return found[-1]


def _host(ca: NebulaCa, name: str, ssh: bool) -> NebulaHost:
    return NebulaHost(
        name,
        NebulaHostArgs(
            node=NODE,
            settings=SETTINGS,
            policy=default_policy(),
            ca_cert_pem=ca.cert_pem,
            ca_key_pem=ca.key_pem,
            lighthouses={"10.200.0.1": ["203.0.113.9:4242"]},
            validity_days=365,
            renew_before_days=30,
            ssh=command.remote.ConnectionArgs(
                host="192.168.10.99", user="ubuntu", private_key=pulumi.Output.secret("mock-key")
            )
            if ssh
            else None,
        ),
    )


@pulumi.runtime.test
def test_ca_key_is_secret_and_cert_public() -> pulumi.Output[None]:
    ca = NebulaCa("unit-ca", NebulaCaArgs("unit-mesh", validity_days=3650, renew_before_days=365))

    def check(values: list[object]) -> None:
        cert, key_secret, cert_secret = values
        assert key_secret is True
        assert cert_secret is False
        parsed = parse_cert_pem(str(cert))
        assert parsed.details.is_ca
        assert parsed.details.not_after - parsed.details.not_before == timedelta(days=3650)
        rotating = _registration("unit-ca-validity")
        assert rotating.plain_inputs["rotationDays"] == 3650 - 365

    return pulumi.Output.all(
        ca.cert_pem,
        pulumi.Output.from_input(ca.key_pem.is_secret()),
        pulumi.Output.from_input(ca.cert_pem.is_secret()),
    ).apply(check)


@pulumi.runtime.test
def test_host_key_and_install_are_secret_and_renewal_is_wired() -> pulumi.Output[None]:
    ca = NebulaCa("unit-ca2", NebulaCaArgs("unit-mesh", validity_days=3650, renew_before_days=365))
    host = _host(ca, "unit-host", ssh=True)
    assert host.install is not None

    def check(values: list[object]) -> None:
        cert, key_secret, files_secret, fragment_secret, _urn = values
        assert key_secret is True
        assert files_secret is True
        assert fragment_secret is True
        parsed = parse_cert_pem(str(cert))
        assert parsed.details.name == "k3s-gpu-9"
        assert [str(n) for n in parsed.details.networks] == ["10.200.1.99/16"]
        assert parsed.details.not_after - parsed.details.not_before == timedelta(days=365)
        # Re-issued once within 30 days of expiry: the validity timestamp rotates then.
        assert _registration("unit-host-validity").plain_inputs["rotationDays"] == 365 - 30
        install = _registration("unit-host-install")
        assert {"create", "update"} <= set(install.secret_inputs)
        assert install.delete_before_replace
        assert "PRIVATE KEY" not in json.dumps(redact(install.inputs))
        assert install.plain_inputs["logging"] == "stderr"

    return pulumi.Output.all(
        host.cert_pem,
        pulumi.Output.from_input(host.key_pem.is_secret()),
        pulumi.Output.from_input(host.files.is_secret()),
        pulumi.Output.from_input(host.cloud_init_fragment.is_secret()),
        host.install.urn,
    ).apply(check)


@pulumi.runtime.test
def test_cloud_init_host_has_no_ssh_install() -> pulumi.Output[None]:
    ca = NebulaCa("unit-ca3", NebulaCaArgs("unit-mesh", validity_days=3650, renew_before_days=365))
    host = _host(ca, "unit-ec2", ssh=False)
    assert host.install is None

    def check(fragment: dict) -> None:
        paths = {entry["path"] for entry in fragment["write_files"]}
        assert {"/etc/nebula/host.key", "/etc/nebula/host.crt", "/etc/nebula/config.yml"} <= paths

    return host.cloud_init_fragment.apply(check)
