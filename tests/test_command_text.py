"""No secret in any command's text (issue #24).

pulumi-command reports a failed command with its whole text (``running %q``;
pulumi/pulumi-command provider/pkg/provider/remote/commandOutputs.go@v1.2.1) and the engine
redacts only values it knows as secrets, so a key pasted into a script, even base64-encoded, ends
up in the terminal and CI logs on the first failure. Secrets reach machines on ``stdin`` or in
secret environment entries, never in ``create``/``update``/``delete``.

The check takes every secret value the program declares anywhere (single-line secrets whole,
private-key PEM blocks line by line) and looks for it in the public text of every command of both
stacks, after decoding every base64 run it finds there (twice, for a blob inside a blob).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import re
from collections.abc import Iterable, Iterator
from typing import Any

from pulumi.runtime import rpc

from tools import offline
from tools.mocks import Registration
from tools.values import redact, unwrap

COMMAND_TYPES = ("command:remote:Command", "command:local:Command", "command:remote:CopyToRemote")
TEXT_INPUTS = ("create", "update", "delete", "environment", "triggers", "stdin")
BASE64_RUN = re.compile(r"[A-Za-z0-9+/]{16,}={0,2}")
MIN_SECRET = 12


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _secret_fragments(text: str) -> Iterator[str]:
    """What of one secret value must never be seen: the value if it is one line, else the body
    lines of each private-key PEM block in it."""
    if "\n" not in text.strip():
        if len(text.strip()) >= MIN_SECRET:
            yield text.strip()
        return
    in_key = False
    for line in text.splitlines():
        if line.startswith("-----BEGIN") and "PRIVATE KEY" in line:
            in_key = True
        elif line.startswith("-----END"):
            in_key = False
        elif in_key and len(line.strip()) >= MIN_SECRET:
            yield line.strip()


def secret_values(registrations: Iterable[Registration]) -> set[str]:
    """Fragments of secret inputs that appear in no public input of a non-command resource (a
    connection is secret as a whole, but its host address is public elsewhere)."""
    registrations = list(registrations)
    found: set[str] = set()

    def walk(value: Any) -> None:
        if rpc.is_rpc_secret(value):
            for text in _strings(unwrap(value)):
                found.update(_secret_fragments(text))
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    for registration in registrations:
        walk(registration.inputs)
    public = (
        json.dumps([redact(r.inputs) for r in registrations if r.type not in COMMAND_TYPES])
        .encode()
        .decode("unicode_escape")
    )
    return {fragment for fragment in found if fragment not in public}


def _decoded(text: str, depth: int = 2) -> Iterator[str]:
    yield text
    if depth == 0:
        return
    for run in BASE64_RUN.findall(text):
        try:
            inner = base64.b64decode(run + "=" * (-len(run) % 4), validate=True)
        except (binascii.Error, ValueError):
            continue
        yield from _decoded(inner.decode("utf-8", errors="ignore"), depth - 1)


def leaks(registrations: list[Registration]) -> list[str]:
    secrets = secret_values(registrations)
    found = []
    for registration in registrations:
        if registration.type not in COMMAND_TYPES:
            continue
        public = redact({k: registration.inputs.get(k) for k in TEXT_INPUTS})
        text = json.dumps(public).encode().decode("unicode_escape")
        for view in _decoded(text):
            for secret in secrets:
                if secret in view:
                    found.append(f"{registration.type} {registration.name}: {secret[:6]}...")
    return found


def test_no_command_text_of_either_stack_carries_a_secret(
    aws_gpu_run: offline.StackRun, homelab_run: offline.StackRun
) -> None:
    for run in (aws_gpu_run, homelab_run):
        registrations = [r for r in run.registrations if not r.read]
        secrets = secret_values(registrations)
        # The check has something to find: the join tokens and private-key lines at least.
        assert len(secrets) > 10, run.stack
        assert any(s.startswith("mock") for s in secrets), run.stack
        assert leaks(registrations) == [], run.stack


def test_a_secret_put_in_a_script_is_found_even_base64_encoded(
    homelab_run: offline.StackRun,
) -> None:
    registrations = [r for r in homelab_run.registrations if not r.read]
    secret = max(secret_values(registrations), key=len)
    command = next(r for r in registrations if r.type == "command:remote:Command")
    for smuggled in (secret, base64.b64encode(secret.encode()).decode()):
        tampered = dataclasses.replace(
            command, inputs={**command.inputs, "create": f"echo {smuggled} | base64 -d >/x"}
        )
        mutated = [tampered if r is command else r for r in registrations]
        assert leaks(mutated), smuggled[:10]
