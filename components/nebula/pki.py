"""Nebula PKI in Python: a CA and host certificates in Nebula's v1 certificate format.

Pure functions, no Pulumi: randomness (32-byte seeds) and time (validity windows) come in as
arguments. In the stacks they come from ``random.RandomBytes`` and ``time.Rotating`` resources
kept in Pulumi state, so the same state always yields the same PEMs and ``pulumi up`` twice
changes nothing, while a new validity window (renewal) or changed inputs re-issue a certificate.

Format (slackhq/nebula v1.6, ``cert/cert.proto``; every Nebula since 1.6 reads v1)::

    RawNebulaCertificate        { Details = 1 (message); Signature = 2 (bytes) }
    RawNebulaCertificateDetails { Name = 1; Ips = 2 (packed uint32 ip,mask pairs);
                                  Subnets = 3 (packed uint32 pairs); Groups = 4 (repeated string);
                                  NotBefore = 5 (int64 unix s); NotAfter = 6; PublicKey = 7;
                                  IsCA = 8; Issuer = 9 (bytes: sha256 of the CA cert); Curve = 100 }

Nebula verifies a signature over its *own* re-marshalling of Details, so :func:`_encode_details`
must produce Go's canonical protobuf encoding: fields in number order, packed repeated scalars,
proto3 zero values omitted. The tests check the result with the real ``nebula-cert``.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

CERT_BANNER = "NEBULA CERTIFICATE"
CA_KEY_BANNER = "NEBULA ED25519 PRIVATE KEY"
HOST_KEY_BANNER = "NEBULA X25519 PRIVATE KEY"
HOST_PUBLIC_KEY_BANNER = "NEBULA X25519 PUBLIC KEY"
SEED_BYTES = 32
X25519_KEY_BYTES = 32


# --------------------------------------------------------------------------------------------
# Minimal protobuf wire encoding (https://protobuf.dev/programming-guides/encoding/)
# --------------------------------------------------------------------------------------------


def _varint(value: int) -> bytes:
    if value < 0:  # int64 negatives are ten-byte two's complement varints
        value += 1 << 64
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _key(field: int, wire_type: int) -> bytes:
    return _varint(field << 3 | wire_type)


def _bytes_field(field: int, data: bytes) -> bytes:
    return _key(field, 2) + _varint(len(data)) + data if data else b""


def _varint_field(field: int, value: int) -> bytes:
    return _key(field, 0) + _varint(value) if value else b""


def _packed_field(field: int, values: Sequence[int]) -> bytes:
    return _bytes_field(field, b"".join(_varint(v) for v in values)) if values else b""


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(data: bytes) -> list[tuple[int, int | bytes]]:
    """(field number, value) pairs; length-delimited values as bytes, varints as int."""
    pos, out = 0, []
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        field, wire_type = key >> 3, key & 7
        if wire_type == 0:
            value, pos = _read_varint(data, pos)
            out.append((field, value))
        elif wire_type == 2:
            length, pos = _read_varint(data, pos)
            out.append((field, data[pos : pos + length]))
            pos += length
        else:
            raise ValueError(f"unsupported protobuf wire type {wire_type} in a Nebula certificate")
    return out


# --------------------------------------------------------------------------------------------
# Certificates
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CertDetails:
    name: str
    networks: tuple[ipaddress.IPv4Interface, ...]
    unsafe_networks: tuple[ipaddress.IPv4Network, ...]
    groups: tuple[str, ...]
    not_before: datetime
    not_after: datetime
    public_key: bytes
    is_ca: bool
    issuer: str
    """Hex fingerprint of the signing CA; empty on a CA."""


@dataclass(frozen=True)
class Certificate:
    details: CertDetails
    signature: bytes
    fingerprint: str


@dataclass(frozen=True)
class NebulaCa:
    cert_pem: str
    key_pem: str
    fingerprint: str


@dataclass(frozen=True)
class HostKeyPair:
    private_pem: str
    public_pem: str


def _pem(banner: str, data: bytes) -> str:
    body = base64.b64encode(data).decode()
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return f"-----BEGIN {banner}-----\n" + "\n".join(lines) + f"\n-----END {banner}-----\n"


def _unpem(banner: str, pem: str) -> bytes:
    text = pem.strip()
    head, tail = f"-----BEGIN {banner}-----", f"-----END {banner}-----"
    if not text.startswith(head) or not text.endswith(tail):
        raise ValueError(f"not a PEM block of type '{banner}'")
    return base64.b64decode("".join(text[len(head) : -len(tail)].split()))


def host_public_key(pem: str) -> bytes:
    """The 32 raw bytes of a ``nebula-cert keygen`` public key PEM; ValueError otherwise."""
    raw = _unpem(HOST_PUBLIC_KEY_BANNER, pem)
    if len(raw) != X25519_KEY_BYTES:
        raise ValueError(f"an X25519 public key has {X25519_KEY_BYTES} bytes, this one {len(raw)}")
    return raw


def _ip_mask_pairs(
    networks: Sequence[ipaddress.IPv4Interface | ipaddress.IPv4Network],
) -> list[int]:
    pairs: list[int] = []
    for net in networks:
        address = net.ip if isinstance(net, ipaddress.IPv4Interface) else net.network_address
        pairs += [int(address), int(net.netmask)]
    return pairs


def _encode_details(d: CertDetails) -> bytes:
    return b"".join(
        (
            _bytes_field(1, d.name.encode()),
            _packed_field(2, _ip_mask_pairs(d.networks)),
            _packed_field(3, _ip_mask_pairs(d.unsafe_networks)),
            b"".join(_bytes_field(4, g.encode()) for g in d.groups),
            _varint_field(5, int(d.not_before.timestamp())),
            _varint_field(6, int(d.not_after.timestamp())),
            _bytes_field(7, d.public_key),
            _varint_field(8, int(d.is_ca)),
            _bytes_field(9, bytes.fromhex(d.issuer)),
            # Curve = 100 is CURVE25519 = 0, the proto3 default: never encoded.
        )
    )


def _encode_cert(details: bytes, signature: bytes) -> bytes:
    return _bytes_field(1, details) + _bytes_field(2, signature)


def _pairs_to(values: list[int], interface: bool) -> tuple:
    out = []
    for ip, mask in zip(values[0::2], values[1::2], strict=True):
        prefix = bin(mask).count("1")
        text = f"{ipaddress.IPv4Address(ip)}/{prefix}"
        out.append(ipaddress.IPv4Interface(text) if interface else ipaddress.IPv4Network(text))
    return tuple(out)


def _unpack(raw: bytes) -> list[int]:
    values, pos = [], 0
    while pos < len(raw):
        value, pos = _read_varint(raw, pos)
        values.append(value)
    return values


def parse_cert_pem(pem: str) -> Certificate:
    """Decode a Nebula v1 certificate (the program's own or one made by ``nebula-cert``)."""
    raw = _unpem(CERT_BANNER, pem)
    outer = dict(_fields(raw))
    details_raw = outer.get(1, b"")
    signature = outer.get(2, b"")
    if not isinstance(details_raw, bytes) or not isinstance(signature, bytes):
        raise ValueError("malformed Nebula certificate")
    name, groups, ips, subnets = "", [], [], []
    numbers: dict[int, int] = {}
    blobs: dict[int, bytes] = {}
    for field, value in _fields(details_raw):
        if field == 1 and isinstance(value, bytes):
            name = value.decode()
        elif field == 2:
            ips += _unpack(value) if isinstance(value, bytes) else [value]
        elif field == 3:
            subnets += _unpack(value) if isinstance(value, bytes) else [value]
        elif field == 4 and isinstance(value, bytes):
            groups.append(value.decode())
        elif isinstance(value, int):
            numbers[field] = value
        else:
            blobs[field] = value
    details = CertDetails(
        name=name,
        networks=_pairs_to(ips, interface=True),
        unsafe_networks=_pairs_to(subnets, interface=False),
        groups=tuple(groups),
        not_before=datetime.fromtimestamp(numbers.get(5, 0), UTC),
        not_after=datetime.fromtimestamp(numbers.get(6, 0), UTC),
        public_key=blobs.get(7, b""),
        is_ca=bool(numbers.get(8, 0)),
        issuer=blobs.get(9, b"").hex(),
    )
    return Certificate(
        details=details, signature=signature, fingerprint=hashlib.sha256(raw).hexdigest()
    )


def _check_seed(seed: bytes, what: str) -> None:
    if len(seed) != SEED_BYTES:
        raise ValueError(f"{what}: seed must be {SEED_BYTES} bytes, got {len(seed)}")


def _check_window(not_before: datetime, not_after: datetime, what: str) -> None:
    if not_before.tzinfo is None or not_after.tzinfo is None:
        raise ValueError(f"{what}: validity times must be timezone-aware")
    if not_after <= not_before:
        raise ValueError(f"{what}: notAfter {not_after} is not after notBefore {not_before}")


def _sign(details: CertDetails, key: Ed25519PrivateKey) -> tuple[str, str]:
    encoded = _encode_details(details)
    raw = _encode_cert(encoded, key.sign(encoded))
    return _pem(CERT_BANNER, raw), hashlib.sha256(raw).hexdigest()


def ca_from_seed(
    seed: bytes,
    name: str,
    not_before: datetime,
    not_after: datetime,
    groups: Sequence[str] = (),
) -> NebulaCa:
    """A self-signed Ed25519 CA. ``groups``, if given, restricts the groups hosts may carry."""
    _check_seed(seed, f"CA '{name}'")
    _check_window(not_before, not_after, f"CA '{name}'")
    key = Ed25519PrivateKey.from_private_bytes(seed)
    public = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    details = CertDetails(
        name=name,
        networks=(),
        unsafe_networks=(),
        groups=tuple(groups),
        not_before=not_before,
        not_after=not_after,
        public_key=public,
        is_ca=True,
        issuer="",
    )
    cert_pem, fingerprint = _sign(details, key)
    # Nebula stores the Ed25519 key as Go's 64-byte form: seed || public key.
    return NebulaCa(
        cert_pem=cert_pem, key_pem=_pem(CA_KEY_BANNER, seed + public), fingerprint=fingerprint
    )


def host_keypair_from_seed(seed: bytes) -> HostKeyPair:
    """An X25519 key pair (the Diffie-Hellman key Nebula's Noise handshake uses)."""
    _check_seed(seed, "host key")
    private = X25519PrivateKey.from_private_bytes(seed)
    public = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return HostKeyPair(
        private_pem=_pem(HOST_KEY_BANNER, seed),
        public_pem=_pem(HOST_PUBLIC_KEY_BANNER, public),
    )


def sign_host_cert(
    ca: NebulaCa,
    *,
    name: str,
    overlay_ip: str,
    groups: Sequence[str],
    public_key_pem: str,
    not_before: datetime,
    not_after: datetime,
    unsafe_networks: Sequence[str] = (),
) -> str:
    """A host certificate signed by ``ca``; refuses what ``nebula-cert sign`` would refuse."""
    what = f"host certificate '{name}'"
    _check_window(not_before, not_after, what)
    ca_cert = parse_cert_pem(ca.cert_pem)
    if not ca_cert.details.is_ca:
        raise ValueError(f"{what}: the signing certificate is not a CA")
    if not_before < ca_cert.details.not_before or not_after > ca_cert.details.not_after:
        raise ValueError(
            f"{what}: validity {not_before:%Y-%m-%d}..{not_after:%Y-%m-%d} lies outside the CA's "
            f"{ca_cert.details.not_before:%Y-%m-%d}..{ca_cert.details.not_after:%Y-%m-%d}"
        )
    if ca_cert.details.groups:
        extra = sorted(set(groups) - set(ca_cert.details.groups))
        if extra:
            raise ValueError(f"{what}: groups {extra} are not allowed by the CA")
    seed = _unpem(CA_KEY_BANNER, ca.key_pem)[:SEED_BYTES]
    key = Ed25519PrivateKey.from_private_bytes(seed)
    ca_public = Ed25519PublicKey.from_public_bytes(ca_cert.details.public_key)
    if key.public_key().public_bytes_raw() != ca_public.public_bytes_raw():
        raise ValueError(f"{what}: the CA key does not match the CA certificate")
    details = CertDetails(
        name=name,
        networks=(ipaddress.IPv4Interface(overlay_ip),),
        unsafe_networks=tuple(ipaddress.IPv4Network(n) for n in unsafe_networks),
        groups=tuple(groups),
        not_before=not_before,
        not_after=not_after,
        public_key=_unpem(HOST_PUBLIC_KEY_BANNER, public_key_pem),
        is_ca=False,
        issuer=ca.fingerprint,
    )
    return _sign(details, key)[0]


def needs_reissue(not_after: datetime, now: datetime, renew_before: timedelta) -> bool:
    """True once ``now`` is within ``renew_before`` of expiry."""
    return now >= not_after - renew_before
