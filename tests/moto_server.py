"""A real moto server on loopback (``python -m moto.server``, moto[server]), for tests that talk to
S3, STS and IAM over HTTP exactly as the tools do against AWS."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import boto3

REGION = "us-west-2"
LISTENING = re.compile(r"Running on http://127\.0\.0\.1:(\d+)")
TEST_KEY = ("testing-key", "testing-secret")


class MotoServer:
    def __init__(self, log: Path) -> None:
        self.log = log
        self._clients: dict[tuple[str, tuple[str, str], str | None], Any] = {}
        with log.open("w") as output:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", "0"],
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        self.url = self._wait_listening()

    def _wait_listening(self, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = LISTENING.search(self.log.read_text())
            if match:
                return f"http://127.0.0.1:{match.group(1)}"
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"moto server did not start:\n{self.log.read_text()}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def client(
        self, service: str, key: tuple[str, str] = TEST_KEY, token: str | None = None
    ) -> Any:
        """A client of this server (one per service and credentials: creating one is slow)."""
        cache_key = (service, key, token)
        if cache_key not in self._clients:
            self._clients[cache_key] = self.new_client(service, key, token)
        return self._clients[cache_key]

    def new_client(
        self, service: str, key: tuple[str, str] = TEST_KEY, token: str | None = None
    ) -> Any:
        return boto3.Session(
            aws_access_key_id=key[0],
            aws_secret_access_key=key[1],
            aws_session_token=token,
            region_name=REGION,
        ).client(service, endpoint_url=self.url)  # pyright: ignore[reportCallIssue]

    def env(self, key: tuple[str, str] | None = TEST_KEY) -> dict[str, str]:
        """Environment for a CLI process: this server as every AWS endpoint, nothing from the
        user's AWS configuration, and the given access key (none: no credentials at all)."""
        env = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith("AWS_") or name == "AWS_CA_BUNDLE"
        }
        env |= {
            "AWS_ENDPOINT_URL": self.url,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_CONFIG_FILE": "/nonexistent/aws-config",
            "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        if key is not None:
            env |= {"AWS_ACCESS_KEY_ID": key[0], "AWS_SECRET_ACCESS_KEY": key[1]}
        return env

    def enforce_iam(self) -> None:
        """From now on every request is authenticated and authorized against moto's IAM
        (moto's "IAM-like access control": /moto-api/reset-auth with a count of 0)."""
        url = f"{self.url}/moto-api/reset-auth"  # http://127.0.0.1:<port>, never another scheme
        request = urllib.request.Request(url, data=b"0", headers={"Content-Type": "text/plain"})  # noqa: S310
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            response.read()

    def create_bucket(self, name: str) -> None:
        self.client("s3").create_bucket(
            Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION}
        )
