"""Nebula certificates made by the program, checked by the real nebula-cert."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from components.nebula import pki
from tests.real_tools import require, run

START = datetime(2026, 1, 1, tzinfo=UTC)
CA_SEED = bytes(range(32))
HOST_SEED = bytes(range(32, 64))


def _ca(seed: bytes = CA_SEED, groups: tuple[str, ...] = ()) -> pki.NebulaCa:
    return pki.ca_from_seed(seed, "hybridgpu-mesh", START, START + timedelta(days=3650), groups)


def _host(ca: pki.NebulaCa, **overrides: object) -> str:
    keys = pki.host_keypair_from_seed(HOST_SEED)
    args: dict[str, object] = {
        "name": "k3s-gpu-1",
        "overlay_ip": "10.200.1.11/16",
        "groups": ["homelab", "kubernetes", "gpu"],
        "public_key_pem": keys.public_pem,
        "not_before": START,
        "not_after": START + timedelta(days=365),
        "unsafe_networks": ["10.42.0.0/24"],
    } | overrides
    return pki.sign_host_cert(ca, **args)  # type: ignore[arg-type]


def _write(tmp_path: Path, **files: str) -> dict[str, Path]:
    paths = {}
    for name, text in files.items():
        paths[name] = tmp_path / name
        paths[name].write_text(text)
    return paths


def test_host_cert_verifies_against_the_program_ca(tmp_path: Path) -> None:
    ca = _ca()
    paths = _write(tmp_path, ca=ca.cert_pem, crt=_host(ca))
    result = run(
        require("nebula-cert"), "verify", "-ca", paths["ca"], "-crt", paths["crt"], check=False
    )
    assert result.returncode == 0, result.stderr


def test_nebula_cert_prints_the_requested_fields(tmp_path: Path) -> None:
    ca = _ca()
    paths = _write(tmp_path, ca=ca.cert_pem, crt=_host(ca))
    printed = json.loads(
        run(require("nebula-cert"), "print", "-json", "-path", paths["crt"]).stdout
    )
    details = printed["details"]
    assert details["name"] == "k3s-gpu-1"
    assert details["ips"] == ["10.200.1.11/16"]
    assert details["subnets"] == ["10.42.0.0/24"]
    assert details["groups"] == ["homelab", "kubernetes", "gpu"]
    assert details["isCa"] is False
    assert details["notBefore"] == "2026-01-01T00:00:00Z"
    assert details["notAfter"] == "2027-01-01T00:00:00Z"
    ca_printed = json.loads(
        run(require("nebula-cert"), "print", "-json", "-path", paths["ca"]).stdout
    )
    assert ca_printed["details"]["isCa"] is True
    assert details["issuer"] == ca_printed["fingerprint"] == ca.fingerprint


def test_cert_of_another_ca_fails_verification(tmp_path: Path) -> None:
    ours, theirs = _ca(), _ca(seed=bytes(32))
    paths = _write(tmp_path, ca=ours.cert_pem, crt=_host(theirs))
    result = run(
        require("nebula-cert"), "verify", "-ca", paths["ca"], "-crt", paths["crt"], check=False
    )
    assert result.returncode != 0


def test_real_nebula_cert_signs_with_our_ca_key_and_we_decode_it(tmp_path: Path) -> None:
    """Our CA key and public key PEMs are nebula's own format; our decoder reads its certs."""
    ca = _ca()
    keys = pki.host_keypair_from_seed(HOST_SEED)
    paths = _write(tmp_path, ca_crt=ca.cert_pem, ca_key=ca.key_pem, pub=keys.public_pem)
    out = tmp_path / "signed.crt"
    run(
        require("nebula-cert"),
        "sign",
        "-ca-crt",
        paths["ca_crt"],
        "-ca-key",
        paths["ca_key"],
        "-name",
        "by-nebula",
        "-ip",
        "10.200.3.4/16",
        "-groups",
        "aws,gpu",
        "-in-pub",
        paths["pub"],
        "-out-crt",
        out,
        "-duration",
        "24h",
    )
    decoded = pki.parse_cert_pem(out.read_text())
    assert decoded.details.name == "by-nebula"
    assert [str(n) for n in decoded.details.networks] == ["10.200.3.4/16"]
    assert decoded.details.groups == ("aws", "gpu")
    assert decoded.details.issuer == ca.fingerprint
    assert decoded.details.public_key == pki.parse_cert_pem(_host(ca)).details.public_key


def test_round_trip_and_determinism() -> None:
    ca = _ca()
    first, second = _host(ca), _host(_ca())
    assert first == second, "same seeds and inputs must give byte-identical certificates"
    decoded = pki.parse_cert_pem(first)
    assert decoded.details.name == "k3s-gpu-1"
    assert decoded.details.not_after == START + timedelta(days=365)
    assert pki.parse_cert_pem(ca.cert_pem).details.is_ca


def test_refuses_what_nebula_would_refuse() -> None:
    ca = _ca(groups=("homelab", "kubernetes"))
    with pytest.raises(ValueError, match="not allowed by the CA"):
        _host(ca)  # asks for group gpu
    with pytest.raises(ValueError, match="outside the CA"):
        _host(_ca(), not_after=START + timedelta(days=4000))
    with pytest.raises(ValueError, match="32 bytes"):
        pki.host_keypair_from_seed(b"short")
    with pytest.raises(ValueError, match="not after"):
        pki.ca_from_seed(CA_SEED, "x", START, START)


def test_needs_reissue_window() -> None:
    expiry = START + timedelta(days=365)
    assert not pki.needs_reissue(expiry, START + timedelta(days=300), timedelta(days=30))
    assert pki.needs_reissue(expiry, START + timedelta(days=340), timedelta(days=30))
