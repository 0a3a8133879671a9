"""The URNs of what cannot be recreated without loss, checked in
(tests/fixtures/protected-urns.json).

A URN is the parent chain, the type and the name: moving a resource under another component,
renaming it or renaming a component's type token gives it a new URN, and the engine then creates a
new one and deletes the old (a new k3s token, a new mesh CA, an empty model bucket). The test fails
when a protected resource's URN changes unless the resource carries the old URN as an alias.

``python -m tools.urn_snapshot`` prints the current snapshot; ``--write`` updates the file (do that
only together with an alias, or for a resource that is new).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Mapping, Sequence

from tools import offline
from tools.mocks import Registration

SNAPSHOT = offline.REPO_ROOT / "tests" / "fixtures" / "protected-urns.json"


def protected(registrations: Iterable[Registration]) -> list[str]:
    return sorted(r.urn for r in registrations if r.protect and not r.read)


def current() -> dict[str, list[str]]:
    runs = {stack: offline.run_with_dependencies(stack) for stack in offline.STACK_ORDER}
    return {stack: protected(run.registrations) for stack, run in runs.items()}


def problems(
    snapshot: Mapping[str, Sequence[str]], runs: Mapping[str, Sequence[Registration]]
) -> list[str]:
    """Every protected URN of the snapshot that a run neither declares nor aliases, and every
    protected URN a run declares that the snapshot lacks."""
    found = []
    for stack, expected in snapshot.items():
        registrations = runs[stack]
        urns = {r.urn for r in registrations}
        aliased = {alias for r in registrations for alias in r.aliases}
        for urn in expected:
            if urn not in urns and urn not in aliased:
                found.append(
                    f"{stack}: protected {urn} is gone without an alias: the engine would create "
                    "a new one and delete it (add aliases=[...] to the resource that replaced it)"
                )
        for urn in protected(registrations):
            if urn not in expected:
                found.append(f"{stack}: {urn} is protected but not in {SNAPSHOT.name}")
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--write", action="store_true", help=f"update {SNAPSHOT}")
    args = parser.parse_args(argv)
    text = json.dumps(current(), indent=2) + "\n"
    if args.write:
        SNAPSHOT.write_text(text)
    else:
        print(text, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
