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


def ca_from_seed(
    seed: bytes, common_name: str, not_before: datetime, not_after: datetime
) -> X509Ca:
    """A self-signed ECDSA P-256 CA certificate that may sign leaf certificates only
    (``pathLenConstraint`` 0)."""
    if len(seed) < 32:
        raise ValueError(f"CA '{common_name}': seed of {len(seed)} bytes, need at least 32")
    if not not_before < not_after:
        raise ValueError(f"CA '{common_name}': not_before {not_before} is not before {not_after}")
    scalar = int.from_bytes(hashlib.sha256(seed).digest(), "big") % (P256_ORDER - 1) + 1
    key = ec.derive_private_key(scalar, ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        # The serial from the validity: a re-issued certificate (next window) gets a new one.
        .serial_number(
            int.from_bytes(
                hashlib.sha256(f"{common_name}|{not_before.isoformat()}".encode()).digest()[:16],
                "big",
            )
            >> 1
        )
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256(), ecdsa_deterministic=True)
    )
    return X509Ca(
        cert_pem=cert.public_bytes(serialization.Encoding.PEM).decode(),
        key_pem=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode(),
    )
