"""``--credentials roles-anywhere``: the EC2 calls go out with the short-lived credentials a
(fake, loopback, TLS) IAM Roles Anywhere CreateSession endpoint returns, and that endpoint sees
the X.509 certificate, the three ARNs and an X.509 signature (the library's signing scheme)."""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gpu_waker.__main__ import parser
from gpu_waker.credentials import aws_session, roles_anywhere_from
from tests.conftest import FAKE_AWS_ENV, cli, run, start_cli
from tests.fakes import Ec2Front, MotoEc2

ACCOUNT = "123456789012"
ANCHOR = (
    f"arn:aws:rolesanywhere:us-west-2:{ACCOUNT}:trust-anchor/0b5a6e2c-1d2f-4a3b-9c8d-7e6f5a4b3c2d"
)
PROFILE = f"arn:aws:rolesanywhere:us-west-2:{ACCOUNT}:profile/6f1c2d3e-4a5b-4c6d-8e7f-9a0b1c2d3e4f"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/hybridgpu-gate"
ACCESS_KEY = "ASIAROLESANYWHERE0001"
SECRET_KEY = "roles-anywhere-secret-0123456789abcdefghij"
SESSION_TOKEN = "roles-anywhere-session-token-0123456789"


def self_signed(
    name: str, *, ip: str | None = None, serial: int | None = None
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(serial or x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
    )
    if ip is not None:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]),
            critical=False,
        )
    return builder.sign(key, hashes.SHA256()), key


def write_pem(
    tmp: Path, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> tuple[Path, Path]:
    cert_file, key_file = tmp / f"{stem}.crt", tmp / f"{stem}.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


@dataclass
class FakeRolesAnywhere:
    """CreateSession (POST /sessions) over TLS on loopback: records what it is sent, answers
    in the shape the service documents and the library parses
    (``credentialSet[0].credentials``: accessKeyId, secretAccessKey, sessionToken,
    expiration; iam-rolesanywhere-session 3.0.0, IAMRolesAnywhereSession.__get_credentials)."""

    requests: list[tuple[dict[str, str], dict[str, Any]]] = field(default_factory=list)

    async def create_session(self, request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        self.requests.append((dict(request.headers), body))
        expiration = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
        return web.json_response(
            {
                "credentialSet": [
                    {
                        "assumedRoleUser": {
                            "arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/hybridgpu-gate/1",
                            "assumedRoleId": "AROAFAKE:1",
                        },
                        "credentials": {
                            "accessKeyId": ACCESS_KEY,
                            "secretAccessKey": SECRET_KEY,
                            "sessionToken": SESSION_TOKEN,
                            "expiration": expiration.strftime("%Y-%m-%dT%H:%M:%SZ"),
                        },
                        "packedPolicySize": 0,
                        "roleArn": body.get("roleArn"),
                        "sourceIdentity": "CN=gate",
                    }
                ],
                "subjectArn": f"arn:aws:rolesanywhere:us-west-2:{ACCOUNT}:subject/1",
            },
            status=201,
        )


def test_ec2_calls_use_the_credentials_of_roles_anywhere(moto_ec2: MotoEc2, tmp_path: Path) -> None:
    client_cert, client_key = self_signed("gate", serial=424242)
    cert_file, key_file = write_pem(tmp_path, "gate", client_cert, client_key)
    server_cert, server_key = self_signed("127.0.0.1", ip="127.0.0.1")
    server_cert_file, server_key_file = write_pem(tmp_path, "server", server_cert, server_key)
    fake = FakeRolesAnywhere()

    async def scenario() -> None:
        app = web.Application()
        app.router.add_post("/sessions", fake.create_session)
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(server_cert_file, server_key_file)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls).start()
        port = int(runner.addresses[0][1])
        front = Ec2Front(moto_ec2.url)
        await front.start()
        argv = cli(
            front,
            tmp_path,
            "--instance-id", moto_ec2.instance_id,
            "--upstream-url", "http://127.0.0.1:9",
            "--credentials", "roles-anywhere",
            "--roles-anywhere-trust-anchor-arn", ANCHOR,
            "--roles-anywhere-profile-arn", PROFILE,
            "--roles-anywhere-role-arn", ROLE,
            "--certificate-file", str(cert_file),
            "--private-key-file", str(key_file),
            "--roles-anywhere-endpoint-url", f"https://127.0.0.1:{port}",
        )  # fmt: skip
        # The fake's TLS certificate is trusted through verify= (a CA bundle path); the rest
        # is what --credentials roles-anywhere builds.
        aws = aws_session(
            roles_anywhere_from(parser().parse_args(argv)), verify=str(server_cert_file)
        )
        waker = await start_cli(argv, aws=aws)
        try:
            power = waker.controller.power
            assert (await power.describe()).name == "stopped"
            await power.start()
            assert moto_ec2.state() == "running"
        finally:
            await waker.close()
            await front.close()
            await runner.cleanup()
        # The EC2 calls were signed with the session's credentials, not the environment's.
        assert [c.action for c in front.seen] == ["DescribeInstances", "StartInstances"]
        for call in front.seen:
            assert f"Credential={ACCESS_KEY}/" in call.authorization
            assert FAKE_AWS_ENV["AWS_ACCESS_KEY_ID"] not in call.authorization
            assert call.security_token == SESSION_TOKEN

    run(scenario)
    assert len(fake.requests) == 1  # one session for both calls
    headers, body = fake.requests[0]
    der = client_cert.public_bytes(serialization.Encoding.DER)
    assert base64.b64decode(headers["X-Amz-X509"]) == der
    assert body["trustAnchorArn"] == ANCHOR
    assert body["profileArn"] == PROFILE
    assert body["roleArn"] == ROLE
    # The X.509 signing scheme: algorithm of the key and hash, credential = certificate serial.
    authorization = headers["Authorization"]
    assert authorization.startswith("AWS4-X509-ECDSA-SHA256 Credential=424242/")
    assert "/us-west-2/rolesanywhere/aws4_request, SignedHeaders=" in authorization
    assert "x-amz-x509" in authorization.split("SignedHeaders=")[1].split(",")[0].split(";")
