"""AWS credentials of the EC2 calls: the default chain, or IAM Roles Anywhere.

- ``default``: boto3's default chain. On the AWS control node that is its instance profile
  through IMDSv2: no key on disk.
- ``roles-anywhere`` (the gate in the homelab, where no instance profile exists): short-lived
  credentials from IAM Roles Anywhere's CreateSession, signed with an X.509 certificate and its
  private key, refreshed before they expire (awslabs/iam-roles-anywhere-session, a refreshable
  boto3 Session). Never static keys.

Wrong or missing options end the program (SystemExit) naming the option, before any AWS call.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from boto3.session import Session
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from iam_rolesanywhere_session import IAMRolesAnywhereSession

DEFAULT, ROLES_ANYWHERE = "default", "roles-anywhere"
CREDENTIALS = (DEFAULT, ROLES_ANYWHERE)
ROLES_ANYWHERE_OPTIONS = (
    "roles-anywhere-trust-anchor-arn",
    "roles-anywhere-profile-arn",
    "roles-anywhere-role-arn",
    "certificate-file",
    "private-key-file",
)
"""Required with ``--credentials roles-anywhere``, refused without it."""
SESSION_SECONDS = 3600
"""Lifetime asked of CreateSession (the library refreshes before expiry)."""

# ARN formats (trust-anchor/<id>, profile/<id>; role/<path+name>): the Service Authorization
# Reference, https://docs.aws.amazon.com/service-authorization/latest/reference/ pages
# list_awsidentityandaccessmanagementrolesanywhere.html and
# list_awsidentityandaccessmanagementiam.html
_ROLES_ANYWHERE_ARN = re.compile(
    r"^arn:aws[a-z-]*:rolesanywhere:(?P<region>[a-z0-9-]+):\d{12}:(?P<kind>[a-z-]+)/[A-Za-z0-9-]+$"
)
_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+$")


@dataclass(frozen=True)
class RolesAnywhere:
    trust_anchor_arn: str
    profile_arn: str
    role_arn: str
    certificate_pem: bytes
    private_key_pem: bytes
    region: str
    """The trust anchor's region: CreateSession is a regional call."""
    endpoint: str | None = None
    """host[:port] of CreateSession (tests only; default: the region's endpoint)."""


def _value(args: argparse.Namespace, option: str) -> str | None:
    value = getattr(args, option.replace("-", "_"), None)
    return value.strip() if isinstance(value, str) and value.strip() else None


def _fail(option: str, value: str | None, why: str) -> SystemExit:
    shown = f" '{value}'" if value is not None else ""
    return SystemExit(f"gpu-waker: --{option}{shown}: {why}")


def _anywhere_arn(args: argparse.Namespace, option: str, kind: str) -> tuple[str, str]:
    arn = _value(args, option)
    assert arn is not None
    match = _ROLES_ANYWHERE_ARN.match(arn)
    if not match or match["kind"] != kind:
        raise _fail(
            option, arn, f"not an IAM Roles Anywhere {kind} ARN (arn:aws:rolesanywhere:"
            f"<region>:<account>:{kind}/<id>)"
        )  # fmt: skip
    return arn, match["region"]


def _read(args: argparse.Namespace, option: str) -> bytes:
    path = _value(args, option)
    assert path is not None
    try:
        return Path(path).read_bytes()
    except OSError as err:
        raise _fail(option, path, f"cannot be read ({err.strerror})") from None


def roles_anywhere_from(args: argparse.Namespace) -> RolesAnywhere | None:
    """The Roles Anywhere settings (None with ``--credentials default``), checked: the three
    ARNs well-formed and in one region, the certificate and key readable PEM of one key pair,
    the endpoint an https URL."""
    mode = _value(args, "credentials") or DEFAULT
    if mode not in CREDENTIALS:
        raise _fail("credentials", mode, f"must be one of {', '.join(CREDENTIALS)}")
    given = [o for o in (*ROLES_ANYWHERE_OPTIONS, "roles-anywhere-endpoint-url") if _value(args, o)]
    if mode == DEFAULT:
        if given:
            raise _fail(given[0], _value(args, given[0]), "needs --credentials roles-anywhere")
        return None
    for option in ROLES_ANYWHERE_OPTIONS:
        if not _value(args, option):
            raise _fail(option, None, "is required with --credentials roles-anywhere")
    anchor, region = _anywhere_arn(args, "roles-anywhere-trust-anchor-arn", "trust-anchor")
    profile, profile_region = _anywhere_arn(args, "roles-anywhere-profile-arn", "profile")
    if profile_region != region:
        raise _fail(
            "roles-anywhere-profile-arn",
            profile,
            f"is in {profile_region}, the trust anchor in {region}: they must share a region",
        )
    role = _value(args, "roles-anywhere-role-arn")
    assert role is not None
    if not _ROLE_ARN.match(role):
        raise _fail("roles-anywhere-role-arn", role, "not an IAM role ARN")
    cert_pem, key_pem = _read(args, "certificate-file"), _read(args, "private-key-file")
    try:
        certificate = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as err:
        raise _fail("certificate-file", _value(args, "certificate-file"), str(err)) from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as err:
        raise _fail("private-key-file", _value(args, "private-key-file"), str(err)) from None
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if key.public_key().public_bytes(der, public) != certificate.public_key().public_bytes(
        der, public
    ):
        raise _fail(
            "private-key-file",
            _value(args, "private-key-file"),
            "is not the key of --certificate-file",
        )
    endpoint = None
    url = _value(args, "roles-anywhere-endpoint-url")
    if url is not None:
        parts = urlsplit(url)
        # The library always calls https://<endpoint>/sessions.
        if parts.scheme != "https" or not parts.netloc or parts.path not in ("", "/"):
            raise _fail("roles-anywhere-endpoint-url", url, "must be https://host[:port]")
        endpoint = parts.netloc
    return RolesAnywhere(anchor, profile, role, cert_pem, key_pem, region, endpoint)


def aws_session(settings: RolesAnywhere | None, *, verify: bool | str = True) -> Session:
    """A boto3 Session: the default chain, or refreshable Roles Anywhere credentials (nothing is
    fetched until the first AWS call). ``verify``: TLS verification of CreateSession (a CA
    bundle path in tests)."""
    if settings is None:
        return Session()
    return IAMRolesAnywhereSession(
        trust_anchor_arn=settings.trust_anchor_arn,
        profile_arn=settings.profile_arn,
        role_arn=settings.role_arn,
        certificate=settings.certificate_pem,
        private_key=settings.private_key_pem,
        region=settings.region,
        endpoint=settings.endpoint,
        session_duration=SESSION_SECONDS,
        verify=verify,
    ).get_session()
