"""The peering and unpeering scripts the program declares pass liqoctl only flags its pinned
version has (``../shared/upstream/liqoctl/flags-<version>.json``, read from liqotech/liqo's
cmd/liqoctl at the tag). The scripts are the very ``create``/``delete`` commands recorded in the
homelab run, executed by bash against a fake liqoctl that records its argv, so the flags are the
ones liqoctl would receive after the shell's quoting, arrays and line continuations."""

from __future__ import annotations

from pathlib import Path

import pytest

from stacks.config import ProjectSettings
from tests import fake_liqoctl
from tests.upstream_cli import liqoctl_flags, liqoctl_problems
from tools.offline import StackRun

pytestmark = pytest.mark.upstream

LIQO_VERSION = ProjectSettings.model_fields["liqo_version"].default


def _scripts(homelab_run: StackRun) -> dict[str, str]:
    peering = homelab_run.one("command:local:Command", "liqo-peering-liqoctl").plain_inputs
    return {"peer": peering["create"], "unpeer": peering["delete"]}


def _calls(script: str, run_dir: Path) -> list[list[str]]:
    result = fake_liqoctl.run_script(script, run_dir, version=LIQO_VERSION)
    assert result.returncode == 0, result.stderr
    return fake_liqoctl.invocations(run_dir)


@pytest.mark.parametrize("command", ["peer", "unpeer"])
def test_scripts_pass_only_flags_the_pinned_liqoctl_has(
    command: str, homelab_run: StackRun, tmp_path: Path
) -> None:
    flags = liqoctl_flags(LIQO_VERSION)
    calls = _calls(_scripts(homelab_run)[command], tmp_path)
    # The version check first, then the command itself: nothing else, nothing missed.
    assert [call[0] for call in calls] == ["version", command]
    assert calls[0] == ["version", "--client"]
    problems = [p for call in calls for p in liqoctl_problems(call, flags)]
    assert not problems, "\n".join(problems)
    flags_passed = {token for token in calls[1] if token.startswith("--")}
    assert {"--kubeconfig", "--remote-kubeconfig", "--skip-confirm"} <= flags_passed


def test_an_unknown_flag_fails(homelab_run: StackRun, tmp_path: Path) -> None:
    script = _scripts(homelab_run)["peer"].replace("--gw-client-port", "--gw-client-prot")
    (call,) = [c for c in _calls(script, tmp_path) if c[0] == "peer"]
    (problem,) = liqoctl_problems(call, liqoctl_flags(LIQO_VERSION))
    assert problem == (
        "liqoctl peer: --gw-client-prot is not a flag of 'peer' at v1.2.0; "
        "did you mean --gw-client-port?"
    )


def test_a_flag_of_another_command_fails(homelab_run: StackRun, tmp_path: Path) -> None:
    """``--wait`` belongs to unpeer (and network), not to peer."""
    script = _scripts(homelab_run)["peer"].replace("--skip-confirm", "--skip-confirm --wait")
    (call,) = [c for c in _calls(script, tmp_path) if c[0] == "peer"]
    (problem,) = liqoctl_problems(call, liqoctl_flags(LIQO_VERSION))
    assert problem.startswith("liqoctl peer: --wait is not a flag of 'peer'")


def test_flags_are_read_as_the_shell_splits_them(tmp_path: Path) -> None:
    """bash resolves quoting and expansion (a flag held in a variable is still a flag). Every
    token starting with ``--`` is read as a flag name: the data has no flag types, so a value that
    starts with ``--`` would be reported (a false alarm, never a miss)."""
    script = 'opt=--mtu\nliqoctl peer --cpu "--not-a-flag" --memory=1Gi $opt 1200 -n liqo\n'
    (call,) = _calls(script, tmp_path)
    assert call == ["peer", "--cpu", "--not-a-flag", "--memory=1Gi", "--mtu", "1200", "-n", "liqo"]
    (problem,) = liqoctl_problems(call, liqoctl_flags(LIQO_VERSION))
    assert "--not-a-flag" in problem
    flags = liqoctl_flags(LIQO_VERSION)
    assert liqoctl_problems(["peer", "--memory=1Gi", "-n", "liqo"], flags) == []
    assert liqoctl_problems(["pear"], flags) == ["liqoctl pear: no such command at v1.2.0"]
