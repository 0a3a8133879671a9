"""SSH host keys the program owns: derived from a 32-byte seed kept in Pulumi state, so the key a
node serves is known before the node exists and every SSH client of the program can pin it.

The private key is written in OpenSSH's own format (``openssh-key-v1``, PROTOCOL.key in the
OpenSSH sources), which sshd needs for Ed25519 host keys. The format carries a 32-bit "check
int" that ssh-keygen fills with random bytes; here it is derived from the seed, so the same seed
always gives byte-identical files and ``pulumi up`` twice changes nothing. The tests check the
result with the real ``ssh-keygen``.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

KEY_TYPE = b"ssh-ed25519"
SEED_BYTES = 32


@dataclass(frozen=True)
class HostKey:
    private_openssh: str
    """``/etc/ssh/ssh_host_ed25519_key`` (secret)."""
    public_line: str
    """``ssh-ed25519 AAAA... comment``: ``/etc/ssh/ssh_host_ed25519_key.pub``."""
    public_key: str
    """``ssh-ed25519 AAAA...`` without comment: what a client pins."""


def _string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def host_key_from_seed(seed: bytes, comment: str) -> HostKey:
    if len(seed) != SEED_BYTES:
        raise ValueError(f"an Ed25519 seed is {SEED_BYTES} bytes, got {len(seed)}")
    key = Ed25519PrivateKey.from_private_bytes(seed)
    public = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    public_blob = _string(KEY_TYPE) + _string(public)
    check = hashlib.sha256(b"hybridgpu-ssh-checkint" + seed).digest()[:4]
    private_section = (
        check
        + check
        + _string(KEY_TYPE)
        + _string(public)
        + _string(seed + public)
        + _string(comment.encode())
    )
    # Pad to the cipher block size (8 for "none") with 1, 2, 3, ...
    padding = bytes(range(1, 8 - len(private_section) % 8 + 1)) if len(private_section) % 8 else b""
    body = (
        b"openssh-key-v1\x00"
        + _string(b"none")
        + _string(b"none")
        + _string(b"")
        + struct.pack(">I", 1)
        + _string(public_blob)
        + _string(private_section + padding)
    )
    encoded = base64.b64encode(body).decode()
    lines = [encoded[i : i + 70] for i in range(0, len(encoded), 70)]
    private = (
        "-----BEGIN OPENSSH PRIVATE KEY-----\n"
        + "\n".join(lines)
        + "\n-----END OPENSSH PRIVATE KEY-----\n"
    )
    public_key = f"ssh-ed25519 {base64.b64encode(public_blob).decode()}"
    return HostKey(
        private_openssh=private, public_line=f"{public_key} {comment}\n", public_key=public_key
    )
