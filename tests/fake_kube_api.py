"""A Kubernetes API served on loopback for tests of the ``./dev`` commands that talk to a
cluster (tests/test_verify.py, tests/test_restore.py): a small http.server answers GETs with
recorded API replies by path, records what is POSTed and DELETEd, and answers claims created by
``./dev verify`` with ``claim_phases`` in turn."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import yaml


@dataclass
class FakeApi:
    """Recorded replies by path; claims created by the verifier answer ``claim_phases`` in turn
    (the last one repeats)."""

    replies: dict[str, Any]
    claim_phases: list[str] = field(default_factory=lambda: ["Pending", "Bound"])
    created: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    claims: dict[str, int] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    bodies: list[dict[str, Any]] = field(default_factory=list)
    """Every POSTed object, in order."""


def _handler(api: FakeApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            prefix = "/api/v1/namespaces/default/persistentvolumeclaims/"
            if self.path.startswith(prefix):
                name = self.path.removeprefix(prefix)
                seen = api.claims.get(name, 0)
                api.claims[name] = seen + 1
                phase = api.claim_phases[min(seen, len(api.claim_phases) - 1)]
                self._send(200, {"kind": "PersistentVolumeClaim", "status": {"phase": phase}})
                return
            if self.path.startswith("/api/v1/namespaces/default/events?fieldSelector="):
                self._send(200, {"kind": "EventList", "items": api.events})
                return
            if self.path not in api.replies:
                self._send(404, {"kind": "Status", "status": "Failure", "code": 404,
                                 "message": f"the server could not find {self.path}"})  # fmt: skip
                return
            self._send(200, api.replies[self.path])

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            api.bodies.append(body)
            api.created.append(f"{body['kind']}/{body['metadata']['name']}")
            self._send(201, body)

        def do_DELETE(self) -> None:
            api.deleted.append(self.path)
            self._send(200, {"kind": "Status", "status": "Success"})

    return Handler


@pytest.fixture
def serve() -> Iterator[Any]:
    servers: list[ThreadingHTTPServer] = []

    def start(api: FakeApi) -> str:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(api))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def silent_port() -> tuple[socket.socket, int]:
    """A port that accepts connections and never answers (a black-holed API)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    return sock, sock.getsockname()[1]


def kubeconfig(server: str) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "homelab", "cluster": {"server": server}}],
            "users": [{"name": "admin", "user": {}}],
            "contexts": [{"name": "homelab", "context": {"cluster": "homelab", "user": "admin"}}],
            "current-context": "homelab",
        }
    )
