"""Reading resource properties as the Pulumi engine sends them to a policy pack.

Properties arrive in the engine's wire format (pulumi/pulumi sdk/go/common/resource/plugin/
analyzer_plugin.go, ``Analyze``: ``MarshalOptions{KeepUnknowns: true, KeepSecrets: true}``):

* a secret is a map ``{SIG_KEY: SECRET_SIG, "value": <plain>}``; the pack keeps these markers
  (see ``pack.keep_secret_markers``) so a rule can tell a Pulumi secret from a plain value;
* a value not known during preview is one of the sentinel strings below; a rule that meets one
  cannot decide and reports nothing (the same rule runs again at ``up``, when values are known).

The offline runs record inputs in exactly this format (``tools/mocks.Registration.inputs``), so
the tests feed the rules what the engine feeds them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

# pulumi/pulumi sdk/go/common/resource/properties.go (same constants in pulumi_policy.deserialize)
SIG_KEY = "4dabf18193072939515e22adb298388d"
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"  # noqa: S105 - a type signature, not a secret
# pulumi_policy/proxy.py: what an unknown value of each kind looks like during preview
UNKNOWN_VALUES = frozenset(
    {
        "1c4a061d-8072-4f0a-a4cb-0ff528b18fe7",  # boolean
        "3eeb2bf0-c639-47a8-9e75-3b44932eb421",  # number
        "04da6b54-80e4-46f7-96ec-b56ff0331ba9",  # string
        "6a19a0b0-7e62-4c92-b797-7f8e31da9cc2",  # array
        "030794c1-ac77-496b-92df-f27374a8bd58",  # asset
        "e48ece36-62e2-4504-bad9-02848725956a",  # archive
        "dd056dcd-154b-4c76-9bd3-c8f88648b5ff",  # object
    }
)


class Unknown(Exception):
    """A value the rule needs is not known yet (preview)."""


def is_secret(value: Any) -> bool:
    return isinstance(value, Mapping) and value.get(SIG_KEY) == SECRET_SIG


def is_unknown(value: Any) -> bool:
    return isinstance(value, str) and value in UNKNOWN_VALUES


def plain(value: Any) -> Any:
    """The value with every secret marker (at any depth) removed."""
    if is_secret(value):
        return plain(value.get("value"))
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def contains_unknown(value: Any) -> bool:
    value = plain(value)
    if is_unknown(value):
        return True
    if isinstance(value, Mapping):
        return any(contains_unknown(v) for v in value.values())
    if isinstance(value, list):
        return any(contains_unknown(v) for v in value)
    return False


def known(value: Any) -> Any:
    """The plain value; raises :class:`Unknown` if any part of it is unknown."""
    if contains_unknown(value):
        raise Unknown
    return plain(value)


def get(props: Mapping[str, Any], path: str, default: Any = None) -> Any:
    """``props["a"]["b"]`` for ``path="a.b"``, stepping through secret markers on the way; the
    value itself keeps its markers. ``default`` when absent."""
    current: Any = props
    for part in path.split("."):
        while is_secret(current):
            current = current.get("value")
        if not isinstance(current, Mapping) or part not in current:
            return default
        current = current[part]
    return current


def walk(
    value: Any, path: str = "", *, inside_secret: bool = False
) -> Iterator[tuple[str, Any, bool]]:
    """Every (dotted path, value, is-secret) below ``value``; a value is secret when it or any
    container above it carries a secret marker."""
    if is_secret(value):
        yield from walk(value.get("value"), path, inside_secret=True)
        return
    yield path, value, inside_secret
    if isinstance(value, Mapping):
        for key, child in value.items():
            yield from walk(
                child, f"{path}.{key}" if path else str(key), inside_secret=inside_secret
            )
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from walk(child, f"{path}[{index}]", inside_secret=inside_secret)


def truthy(value: Any) -> bool:
    """A boolean input as the engine may carry it (``true`` or the string ``"true"``)."""
    value = known(value)
    return value is True or (isinstance(value, str) and value.lower() == "true")


def json_object(value: Any) -> Any:
    """A map that a provider may carry as a JSON string (provider inputs are strings)."""
    value = known(value)
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return value


# --------------------------------------------------------------------------------------------
# Container images and chart versions
# --------------------------------------------------------------------------------------------

DIGEST = re.compile(r"^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[0-9a-fA-F]{32,}$")
# An exact chart version: SemVer 2 with an optional leading v, no range operators.
EXACT_VERSION = re.compile(r"^v?\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$")
CHART_ARCHIVE = re.compile(r"-v?\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?\.tgz$")


def image_pin_problem(reference: str) -> str | None:
    """Why an image reference is not pinned (``None`` when it is).

    Reference grammar (distribution/reference): ``name[:tag][@digest]``; a ``:`` in the first
    path component is a registry port, not a tag. A digest pins; otherwise a tag other than
    ``latest`` is required.
    """
    name, _, digest = reference.partition("@")
    if digest:
        return None if DIGEST.match(digest) else f"malformed digest '{digest}'"
    last = name.rsplit("/", 1)[-1]
    if ":" not in last:
        return "no tag or digest (pulls :latest)"
    tag = last.rsplit(":", 1)[1]
    if not tag:
        return "empty tag"
    if tag.lower() == "latest":
        return "tag 'latest'"
    return None


def chart_version_problem(chart: str, version: str | None) -> str | None:
    """Why a Helm chart reference is not pinned to one version (``None`` when it is)."""
    if chart.startswith(("./", "../", "/")) or (chart.endswith(".tgz") and "://" not in chart):
        return None  # a chart from this repository: pinned by the commit
    if not version:
        if CHART_ARCHIVE.search(chart):
            return None  # https://…/name-1.2.3.tgz carries its version
        return "no chart version (Helm takes the newest)"
    if version.lower() == "latest":
        return "version 'latest'"
    if not EXACT_VERSION.match(version):
        return f"version '{version}' is a range, not one release"
    return None
