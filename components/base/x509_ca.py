"""An X.509 certificate authority derived from a seed (pure, no Pulumi): the private CA that
cert-manager's ``ca`` ClusterIssuer signs LAN-only certificates with.

Same approach as the mesh CA (components/nebula/pki.py ``ca_from_seed``): the key comes from a
seed kept in state and the validity from the stack's renewal window, and the signature is
deterministic ECDSA (RFC 6979; cryptography ``CertificateBuilder.sign(ecdsa_deterministic=True)``),
so the same seed and window always give byte-identical PEM and ``pulumi up`` twice changes
nothing. ECDSA P-256 rather than Ed25519, whose signatures are deterministic too: browsers do not
accept Ed25519 in certificate chains."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

# Order of the P-256 group (SEC 2 v2, section 2.4.2): a private scalar is in [1, n-1].
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


@dataclass(frozen=True)
class X509Ca:
    cert_pem: str
    key_pem: str


@dataclass(frozen=True)
class ClientCert:
    cert_pem: str
    key_pem: str


def ca_from_seed(
    seed: bytes, common_name: str, not_before: datetime, not_after: datetime
) -> X509Ca:
    """A self-signed ECDSA P-256 CA certificate that may sign leaf certificates only
    (``pathLenConstraint`` 0)."""
    if len(seed) < 32:
        raise ValueError(f"CA '{common_name}': seed of {len(seed)} bytes, need at least 32")
    if not not_before < not_after:
        raise ValueError(f"CA '{common_name}': not_before {not_before} is not before {not_after}")
    key = _key_from_seed(seed)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(_serial(common_name, not_before))
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(signs_certificates=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256(), ecdsa_deterministic=True)
    )
    return X509Ca(cert_pem=_pem(cert), key_pem=_key_pem(key))


def client_cert_from_seed(
    ca: X509Ca, seed: bytes, common_name: str, not_before: datetime, not_after: datetime
) -> ClientCert:
    """An end-entity client certificate (and its key, derived from ``seed``) signed by ``ca``,
    deterministic like the CA. It meets what IAM Roles Anywhere asks of an end-entity
    certificate: X.509 v3, basicConstraints CA:false, keyUsage digitalSignature, a SHA-256
    signature (https://docs.aws.amazon.com/rolesanywhere/latest/userguide/trust-model.html,
    "Signature verification")."""
    if len(seed) < 32:
        raise ValueError(f"certificate '{common_name}': seed of {len(seed)} bytes, need 32")
    if not not_before < not_after:
        raise ValueError(f"certificate '{common_name}': {not_before} is not before {not_after}")
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem.encode())
    ca_key = serialization.load_pem_private_key(ca.key_pem.encode(), password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ValueError("the CA key is not an ECDSA key")
    # A certificate that outlives its CA is useless (path validation checks both at use).
    if not_after > ca_cert.not_valid_after_utc:
        raise ValueError(
            f"certificate '{common_name}': valid until {not_after}, after its CA "
            f"({ca_cert.not_valid_after_utc})"
        )
    key = _key_from_seed(seed)
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(public)
        .serial_number(_serial(common_name, not_before))
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(signs_certificates=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.OID_CLIENT_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256(), ecdsa_deterministic=True)
    )
    return ClientCert(cert_pem=_pem(cert), key_pem=_key_pem(key))


def _key_usage(*, signs_certificates: bool) -> x509.KeyUsage:
    """digitalSignature always; keyCertSign and cRLSign for a CA."""
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=signs_certificates,
        crl_sign=signs_certificates,
        encipher_only=False,
        decipher_only=False,
    )


def _key_from_seed(seed: bytes) -> ec.EllipticCurvePrivateKey:
    scalar = int.from_bytes(hashlib.sha256(seed).digest(), "big") % (P256_ORDER - 1) + 1
    return ec.derive_private_key(scalar, ec.SECP256R1())


def _serial(common_name: str, not_before: datetime) -> int:
    """The serial from the validity: a re-issued certificate (next window) gets a new one."""
    digest = hashlib.sha256(f"{common_name}|{not_before.isoformat()}".encode()).digest()
    return int.from_bytes(digest[:16], "big") >> 1


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
