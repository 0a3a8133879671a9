"""Run the real Pulumi program offline, under the SDK's mock runtime, and record what it declares.

Shared by the test suite (``tests/conftest.py``) and the command-line tools (``tools/plan.py``,
``tools/bench.py``): both see exactly the same mocks (``tools/mocks.py``), so the plan a reviewer
reads is the plan the tests check.

:func:`run_stack` runs ``__main__.py`` for a stack with the config from ``Pulumi.<stack>.yaml``
(``Pulumi.yaml`` defaults applied as the CLI would, secure values replaced by placeholders) and
returns a :class:`StackRun`. StackReference reads are answered from the exports of an earlier
mocked run of the referenced stack, so the cross-stack contract is exercised, not assumed.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import os
import re
import runpy
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pulumi
import yaml
from pulumi.runtime import config as runtime_config
from pulumi.runtime import settings
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from components.base.renewal import parse_rfc3339
from stacks import config as stack_config
from stacks.renewal import CLOCK_ENV
from tools.mocks import (
    MOCK_TIME,
    PROJECT,
    Registration,
    StackExports,
    install_mocks,
    jsonable,
    unwrap,
)

REPO_ROOT = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------------------------
# Stack config files
# --------------------------------------------------------------------------------------------

SECRET_PLACEHOLDER = "mock-secret-{key}"  # noqa: S105 - a placeholder, never a credential


def project_defaults() -> dict[str, Any]:
    """``config:`` defaults declared in Pulumi.yaml (the CLI applies them; mocks do not)."""
    project = yaml.safe_load((REPO_ROOT / "Pulumi.yaml").read_text())
    defaults: dict[str, Any] = {}
    for config_key, spec in (project.get("config") or {}).items():
        if isinstance(spec, dict) and "default" in spec:
            defaults[config_key] = spec["default"]
        elif not isinstance(spec, dict):
            defaults[config_key] = spec
    return defaults


def stack_config_file(stack: str) -> dict[str, Any]:
    path = REPO_ROOT / f"Pulumi.{stack}.yaml"
    if not path.exists():  # an unknown stack: let the program say so
        return {}
    data = yaml.safe_load(path.read_text()) or {}
    return dict(data.get("config") or {})


def role_of(stack: str) -> str | None:
    """The stack's shape by its name, as stacks.config.stack_role reads it (None: unknown)."""
    for role in stack_config.KNOWN_STACKS:
        if stack == role or stack.startswith(f"{role}-"):
            return role
    return None


def required_secret_keys(stack: str, role: str | None = None) -> tuple[str, ...]:
    """Secrets the stack's loader reads (from stacks.config, the single source)."""
    keys = {
        stack_config.STACK_AWS_GPU: stack_config.AWS_GPU_SECRET_KEYS,
        stack_config.STACK_HOMELAB: stack_config.HOMELAB_SECRET_KEYS,
    }.get(role or role_of(stack) or "", ())
    return tuple(f"{PROJECT}:{k}" for k in keys)


_PATH_STEP = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def split_config_path(path: str) -> tuple[str, list[str | int]]:
    """``pulumi config set --path`` syntax: 'hybridgpu:aws.gpuWorker.gpus[0]' ->
    ('hybridgpu:aws', ['gpuWorker', 'gpus', 0])."""
    namespace, _, rest = path.partition(":")
    top, _, tail = rest.partition(".")
    if tail.startswith("[") or "[" in top:
        top, _, tail = rest.partition("[")
        tail = "[" + tail
    steps: list[str | int] = [
        int(index) if index else name for name, index in _PATH_STEP.findall(tail)
    ]
    return f"{namespace}:{top}", steps


def edit_config_path(config: dict[str, Any], path: str, value: Any, *, remove: bool) -> None:
    """Set (or remove) ``path`` in a stack's config as ``pulumi config set --path`` does: missing
    objects are created, and index ``len(list)`` appends."""
    top, steps = split_config_path(path)
    keys: list[str | int] = [top, *steps]
    node: Any = config
    for here, step in itertools.pairwise(keys):
        node = _child(node, here, create=[] if isinstance(step, int) else {}, remove=remove)
        if node is None:
            return
    last: Any = keys[-1]
    if remove:
        if isinstance(node, dict):
            cast(dict[Any, Any], node).pop(last, None)
        elif last < len(node):
            del node[last]
    elif isinstance(node, list) and last == len(cast(list[Any], node)):
        cast(list[Any], node).append(value)
    else:
        node[last] = value


def _child(node: Any, key: Any, *, create: Any, remove: bool) -> Any:
    """``node[key]``, made ``create`` when absent (None when removing: nothing to remove)."""
    if isinstance(node, list) and key == len(cast(list[Any], node)):
        cast(list[Any], node).append(None)
    child = cast(dict[Any, Any], node).get(key) if isinstance(node, dict) else node[key]
    if child is None:
        if remove:
            return None
        node[key] = child = create
    return child


def runtime_config_for(
    stack: str, overrides: Mapping[str, Any] | None = None, config_from: str | None = None
) -> tuple[dict[str, str], list[str]]:
    """The (config, secret keys) pair the CLI would hand the program for ``stack``.

    Values are strings as the engine passes them (objects as JSON). ``secure:`` values and
    required-but-unset secrets become placeholders marked secret.
    """
    merged: dict[str, Any] = copy.deepcopy(
        {**project_defaults(), **stack_config_file(config_from or stack)}
    )
    # Whole keys replace; 'key.path[0].leaf' edits inside one, as `pulumi config set --path`.
    for config_key, value in (overrides or {}).items():
        if split_config_path(config_key)[1]:
            edit_config_path(merged, config_key, value, remove=False)
        else:
            merged[config_key] = value
    secret_keys: list[str] = []
    configured_role = merged.get(f"{PROJECT}:{stack_config.ROLE_KEY}")
    for secret_key in required_secret_keys(stack, configured_role):
        merged.setdefault(secret_key, {"secure": "placeholder"})
    config: dict[str, str] = {}
    for config_key, value in merged.items():
        if value is None:
            continue
        if isinstance(value, dict) and set(value) == {"secure"}:
            secret_keys.append(config_key)
            config[config_key] = SECRET_PLACEHOLDER.format(key=config_key.split(":", 1)[-1])
        elif isinstance(value, dict | list):
            config[config_key] = json.dumps(value)
        elif isinstance(value, bool):
            config[config_key] = "true" if value else "false"
        else:
            config[config_key] = str(value)
    return config, secret_keys


# --------------------------------------------------------------------------------------------
# Running a stack
# --------------------------------------------------------------------------------------------


@dataclass
class StackRun:
    stack: str
    registrations: list[Registration]
    exports: dict[str, Any]
    """Export name -> plain value."""
    secret_exports: list[str]
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    component_outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Component URN -> its registered outputs (secret wrappers kept)."""
    referenced: dict[str, StackExports] = field(default_factory=dict)
    """Exports of other stacks this run read through StackReferences, as they were served."""

    def outputs_of(self, typ: str, name: str) -> dict[str, Any]:
        """Plain registered outputs of the component ``typ`` named ``name``."""
        return unwrap(self.component_outputs[self.one(typ, name).urn])

    def by_type(self, typ: str) -> list[Registration]:
        return [r for r in self.registrations if r.type == typ]

    def one(self, typ: str, name: str) -> Registration:
        matches = [r for r in self.registrations if r.type == typ and r.name == name]
        if len(matches) != 1:
            known = sorted(r.name for r in self.by_type(typ))
            raise KeyError(f"expected one {typ} named {name!r}, found {len(matches)}; have {known}")
        return matches[0]

    def by_urn(self) -> dict[str, Registration]:
        return {r.urn: r for r in self.registrations}

    def managed(self) -> Iterator[Registration]:
        return (r for r in self.registrations if not r.read)

    def canonical_inputs(self) -> str:
        """Every resource's inputs (secret wrappers kept), as stable JSON, for identity checks."""
        rows = sorted(
            (
                r.urn,
                json.dumps(r.inputs, sort_keys=True, default=jsonable),
                json.dumps(sorted(r.dependencies)),
            )
            for r in self.registrations
        )
        return json.dumps(rows, indent=0)


def _settle_leftover_tasks() -> None:
    """After a failed run, let the program's remaining tasks finish (or cancel them) so their
    errors cannot surface in the next run of this process."""
    loop = asyncio.get_event_loop()
    pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
    if pending:
        _, still = loop.run_until_complete(asyncio.wait(pending, timeout=5))
        for task in still:
            task.cancel()
    for task in pending:
        if task.done() and not task.cancelled():
            task.exception()  # mark retrieved: no "exception was never retrieved" later
    # Outputs that carried the run's error (every resource downstream of a failed check holds
    # one) are futures, not tasks: asyncio reports each when it is collected. The run already
    # raised that error, so those reports are dropped.
    loop.set_exception_handler(_drop_reported_run_errors)
    runtime_settings = cast(Any, settings.SETTINGS)
    runtime_settings.rpc_manager.clear()


def _drop_reported_run_errors(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    if isinstance(context.get("exception"), pulumi.RunError) and "never retrieved" in str(
        context.get("message", "")
    ):
        return
    loop.default_exception_handler(context)


def _resolve(value: Any) -> tuple[Any, bool]:
    output = pulumi.Output.from_input(value)
    plain = _sync_await(output.future())
    secret = bool(_sync_await(output.is_secret()))
    return plain, secret


def run_stack(
    stack: str,
    overrides: Mapping[str, Any] | None = None,
    *,
    program: Callable[[], object] | None = None,
    now: datetime | None = None,
    config_from: str | None = None,
    preview: bool = False,
    recreated: Collection[str] = (),
) -> StackRun:
    """Run the program for ``stack`` under the mocks and return what it declared.

    ``overrides`` replace config keys (full ``hybridgpu:...`` names) of ``Pulumi.<stack>.yaml``.
    Exceptions of the program (e.g. ``ConfigError``) propagate. The run's exports are kept, so a
    later run of a stack that references this one sees them. ``now`` is the program's clock
    (renewal windows); by default the mocks' fixed time, so a plan does not depend on the day.
    ``recreated`` names resources whose server-assigned ids (e.g. a Kubernetes uid) are new in
    this run, as after a delete and create outside this update.
    """
    mocks, monitor = install_mocks()
    config, secret_keys = runtime_config_for(stack, overrides, config_from)
    settings._set_stack(stack)
    runtime_config.set_all_config(config, secret_keys)
    monitor.reset()
    mocks.stack = stack
    mocks.preview = preview
    runtime_settings_bag = cast(Any, settings.SETTINGS)
    runtime_settings_bag.dry_run = preview
    mocks.calls, mocks.served, mocks.recreated = [], {}, set(recreated)
    root = settings.get_root_resource()
    assert isinstance(root, pulumi.runtime.stack.Stack)
    root.outputs.clear()
    # As pulumi.runtime.test does: forget RPCs and outputs of any earlier run in this process.
    runtime_settings = cast(Any, settings.SETTINGS)
    runtime_settings.rpc_manager.clear()
    runtime_settings.outputs.clear()

    def run_main() -> None:
        if program is not None:
            program()
        else:
            runpy.run_path(str(REPO_ROOT / "__main__.py"), run_name="__main__")

    clock = (now or parse_rfc3339(MOCK_TIME)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    saved_clock = os.environ.get(CLOCK_ENV)
    os.environ[CLOCK_ENV] = clock
    try:
        _sync_await(run_pulumi_func(run_main))
    except BaseException:
        _settle_leftover_tasks()
        raise
    finally:
        mocks.preview = False
        runtime_settings_bag.dry_run = False
        if saved_clock is None:
            os.environ.pop(CLOCK_ENV, None)
        else:
            os.environ[CLOCK_ENV] = saved_clock
    exports: dict[str, Any] = {}
    secret_exports: list[str] = []
    for name, value in sorted(root.outputs.items()):
        plain, secret = _resolve(value)
        exports[name] = plain
        if secret:
            secret_exports.append(name)
    run = StackRun(
        stack=stack,
        registrations=list(monitor.registrations),
        exports=exports,
        secret_exports=secret_exports,
        calls=list(mocks.calls),
        component_outputs=dict(monitor.component_outputs),
        referenced=dict(mocks.served),
    )
    if not preview:  # a preview deploys nothing: later runs still read the last update's exports
        serve(run)
    return run


def serve(run: StackRun) -> None:
    """Make ``run`` the deployed state of its stack for later runs: its exports (what a
    StackReference reads) and its SSM parameters (what an invoke reads)."""
    mocks, _ = install_mocks()
    for registration in run.registrations:
        if registration.type == "aws:ssm/parameter:Parameter":
            plain = registration.plain_inputs
            mocks.parameters[str(plain["name"])] = str(plain["value"])
    mocks.stack_exports[run.stack] = StackExports(
        values=dict(run.exports), secret_names=list(run.secret_exports)
    )


STACK_ORDER = ("aws-gpu", "homelab")
"""Deploy order: homelab reads aws-gpu through a StackReference."""


def run_with_dependencies(
    stack: str, overrides: Mapping[str, Any] | None = None, *, now: datetime | None = None
) -> StackRun:
    """Run the stacks ``stack`` depends on first (unchanged config), then ``stack``."""
    for earlier in STACK_ORDER[: STACK_ORDER.index(stack)] if stack in STACK_ORDER else ():
        run_stack(earlier, now=now)
    return run_stack(stack, overrides, now=now)
