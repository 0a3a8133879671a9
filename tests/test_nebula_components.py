"""NebulaCa / NebulaHost under the mocks: secrets stay secret, renewal is wired to state."""

from __future__ import annotations

import base64
import ipaddress
import json
from datetime import UTC, datetime, timedelta

import pulumi
import pulumi_command as command

from components.base.renewal import Validity, window_validity
from components.nebula.ca import NebulaCa, NebulaCaArgs
from components.nebula.config import MeshNode, MeshSettings, default_policy
from components.nebula.host import NebulaHost, NebulaHostArgs
from components.nebula.pki import parse_cert_pem
from tests.conftest import MONITOR

SETTINGS = MeshSettings(overlay_cidr=ipaddress.IPv4Network("10.200.0.0/16"))
NODE = MeshNode("k3s-gpu-9", ipaddress.IPv4Address("10.200.1.99"), ("homelab", "kubernetes", "gpu"))
ANCHOR = datetime(2026, 3, 1, tzinfo=UTC)
CA_WINDOW = window_validity(anchor=ANCHOR, now=ANCHOR, validity_days=3650, renew_before_days=365)
CA_PREVIOUS = window_validity(
    anchor=ANCHOR - timedelta(days=3285), now=ANCHOR, validity_days=3650, renew_before_days=365
)
HOST_WINDOW = window_validity(anchor=ANCHOR, now=ANCHOR, validity_days=365, renew_before_days=30)


def _registration(name: str):  # type: ignore[no-untyped-def]
    found = [r for r in MONITOR.registrations if r.name == name]
    assert found, f"{name} was not registered"
    return found[-1]


def _ca(name: str, previous: Validity | None = None) -> NebulaCa:
    return NebulaCa(name, NebulaCaArgs("unit-mesh", validity=CA_WINDOW, previous_validity=previous))


def _host(ca: NebulaCa, name: str, ssh: bool, machine: pulumi.CustomResource | None = None):  # type: ignore[no-untyped-def]
    return NebulaHost(
        name,
        NebulaHostArgs(
            node=NODE,
            settings=SETTINGS,
            policy=default_policy(),
            ca_cert_pem=ca.cert_pem,
            ca_bundle_pem=ca.bundle_pem,
            ca_key_pem=ca.key_pem,
            lighthouses={"10.200.0.1": ["203.0.113.9:4242"]},
            validity=HOST_WINDOW,
            ssh=command.remote.ConnectionArgs(
                host="192.168.10.99", user="ubuntu", private_key=pulumi.Output.secret("mock-key")
            )
            if ssh
            else None,
            machine=machine,
        ),
    )


@pulumi.runtime.test
def test_ca_key_is_secret_cert_public_and_seed_protected() -> pulumi.Output[None]:
    ca = _ca("unit-ca")

    def check(values: list[object]) -> None:
        cert, bundle, key_secret, cert_secret = values
        assert key_secret is True
        assert cert_secret is False
        parsed = parse_cert_pem(str(cert))
        assert parsed.details.is_ca
        assert parsed.details.not_before == CA_WINDOW.not_before
        assert parsed.details.not_after == CA_WINDOW.not_after
        assert bundle == cert, "in the first window nodes trust one CA"
        assert _registration("unit-ca-key-seed").protect, "a new seed would be a new CA"

    return pulumi.Output.all(
        ca.cert_pem,
        ca.bundle_pem,
        pulumi.Output.from_input(ca.key_pem.is_secret()),
        pulumi.Output.from_input(ca.cert_pem.is_secret()),
    ).apply(check)


@pulumi.runtime.test
def test_renewed_ca_bundle_keeps_the_previous_certificate_of_the_same_key() -> pulumi.Output[None]:
    ca = _ca("unit-ca-renewed", previous=CA_PREVIOUS)

    def check(values: list[str]) -> None:
        cert, bundle = values
        assert bundle.startswith(cert)
        older = bundle.removeprefix(cert)
        old, new = parse_cert_pem(older).details, parse_cert_pem(cert).details
        assert old.not_before == CA_PREVIOUS.not_before
        assert old.public_key == new.public_key, "renewal re-issues the certificate, same key"

    return pulumi.Output.all(ca.cert_pem, ca.bundle_pem).apply(check)


@pulumi.runtime.test
def test_host_key_secret_install_text_public_and_key_only_on_stdin() -> pulumi.Output[None]:
    ca = _ca("unit-ca2")
    vm = command.local.Command("unit-vm", create="true")  # stands in for the VM resource
    host = _host(ca, "unit-host", ssh=True, machine=vm)
    assert host.install is not None

    def check(values: list[object]) -> None:
        cert, key_secret, files_secret, _urn, vm_urn, vm_id = values
        assert key_secret is True
        assert files_secret is True
        parsed = parse_cert_pem(str(cert))
        assert parsed.details.name == "k3s-gpu-9"
        assert [str(n) for n in parsed.details.networks] == ["10.200.1.99/16"]
        assert parsed.details.not_before == HOST_WINDOW.not_before
        assert parsed.details.not_after == HOST_WINDOW.not_after
        install = _registration("unit-host-install")
        # The command text is public and constant; the files (the key) go on stdin, secret.
        assert not {"create", "update", "delete"} & set(install.secret_inputs)
        assert "stdin" in install.secret_inputs
        text = json.dumps([install.plain_inputs[k] for k in ("create", "update", "delete")])
        assert "PRIVATE KEY" not in text
        assert (
            "PRIVATE KEY"
            in base64.b64decode(
                next(
                    line.split()[2]
                    for line in install.plain_inputs["stdin"].splitlines()
                    if line.startswith("host.key ")
                )
            ).decode()
        )
        assert install.delete_before_replace
        assert install.deleted_with == vm_urn, "no uninstall on a VM being destroyed"
        assert install.plain_inputs["triggers"] == [vm_id], "a replaced VM re-runs the install"
        assert install.plain_inputs["logging"] == "stderr"

    return pulumi.Output.all(
        host.cert_pem,
        pulumi.Output.from_input(host.key_pem.is_secret()),
        pulumi.Output.from_input(host.files.is_secret()),
        host.install.urn,
        vm.urn,
        vm.id,
    ).apply(check)


@pulumi.runtime.test
def test_ec2_host_has_no_ssh_install() -> pulumi.Output[None]:
    host = _host(_ca("unit-ca3"), "unit-ec2", ssh=False)
    assert host.install is None

    def check(fragment: dict) -> None:
        paths = {entry["path"] for entry in fragment["write_files"]}
        assert {"/etc/nebula/host.key", "/etc/nebula/host.crt", "/etc/nebula/config.yml"} <= paths

    return host.cloud_init_fragment.apply(check)
