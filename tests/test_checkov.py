"""checkov (bridgecrewio/checkov, kubernetes framework) over every Kubernetes object the program
declares: the recorded ``kubernetes:*`` registrations of both example stacks and of every valid
fixture (the same walk as tests/test_kubernetes_objects.py). Zero failed checks; a check that
cannot hold is skipped on the object itself, with a written reason (``checkov.io/skipN``
annotations, components/kube/security.py checkov_skips), and the full list of skips is pinned
below so a new one is a reviewed diff.

checkov lives in its own virtualenv (.venv-checkov, made by ``./dev setup`` from
tools/checkov/requirements.txt): it pins boto3 and packaging below what the project uses. It runs
once per session over a temporary directory holding every distinct object."""

from __future__ import annotations

import copy
import json
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.upstream_data import kubernetes_objects
from tools.offline import REPO_ROOT, StackRun

CHECKOV = REPO_ROOT / ".venv-checkov" / "bin" / "checkov"

RUN_LEVEL_EXCLUSIONS: dict[str, str] = {}
"""Checks excluded for the whole run (not on an object), each with its reason."""

EXPECTED_SKIPS = {
    # (object kind.namespace.name, check): why, in the object's annotation.
    ("Deployment.fast-scratch.fast-scratch-provisioner", "CKV_K8S_38"),
    ("Deployment.fast-scratch.fast-scratch-provisioner", "CKV_K8S_8"),
    ("Deployment.fast-scratch.fast-scratch-provisioner", "CKV_K8S_9"),
    ("Deployment.fast-scratch.fast-scratch-provisioner", "CKV_K8S_43"),
    ("Deployment.fast-scratch.fast-scratch-provisioner", "CKV_K8S_15"),
    ("Deployment.open-webui.open-webui", "CKV_K8S_35"),
    ("Deployment.open-webui.open-webui", "CKV_K8S_43"),
    ("Deployment.open-webui.open-webui", "CKV_K8S_15"),
    *(
        (f"Job.gpu-validation.cuda-vectoradd-k3s-gpu-{n}", check)
        for n in (1, 2, 3, 4)
        for check in ("CKV_K8S_43", "CKV_K8S_15")
    ),
}
"""Every skip: images without a verified digest (CKV_K8S_43, and CKV_K8S_15 which a digest would
pass; components/kube/charts.py IMAGES says why each lacks one), the provisioner's API token and
missing probes, Open WebUI's secrets in environment variables."""


@dataclass(frozen=True)
class Finding:
    check_id: str
    resource: str
    file: str
    comment: str = ""


@dataclass(frozen=True)
class Report:
    objects: int
    passed: int
    failed: list[Finding]
    skipped: list[Finding]


def checkov_binary() -> Path:
    """The checkov executable; a missing one fails (real-tool checks never skip)."""
    if not CHECKOV.is_file():
        pytest.fail(f"checkov not found at {CHECKOV}: run ./dev setup")
    return CHECKOV


def run_checkov(objects: Iterable[dict[str, Any]]) -> Report:
    """One checkov invocation over ``objects`` (one YAML file each)."""
    with tempfile.TemporaryDirectory(prefix="checkov-") as tmp:
        count = 0
        for count, obj in enumerate(objects, start=1):
            (Path(tmp) / f"{count:03d}.yaml").write_text(yaml.safe_dump(obj, sort_keys=False))
        result = subprocess.run(
            [
                str(checkov_binary()),
                "--directory",
                tmp,
                "--framework",
                "kubernetes",
                "--output",
                "json",
                "--compact",
                "--skip-download",
            ],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    # Exit 1 means "failed checks found"; anything else but 0 is checkov itself failing.
    assert result.returncode in (0, 1), result.stderr[-3000:]
    data = json.loads(result.stdout)
    reports = data if isinstance(data, list) else [data]
    passed, failed, skipped = 0, [], []
    for report in reports:
        if report.get("check_type") != "kubernetes":
            continue
        summary = report["summary"]
        assert summary["parsing_errors"] == 0, summary
        passed += summary["passed"]
        results = report["results"]
        failed += [_finding(item) for item in results["failed_checks"]]
        skipped += [_finding(item) for item in results["skipped_checks"]]
    return Report(count, passed, failed, skipped)


def _finding(item: dict[str, Any]) -> Finding:
    suppress = item.get("check_result", {}).get("suppress_comment") or ""
    return Finding(item["check_id"], item["resource"], item["file_path"], suppress)


def distinct_objects(runs: Iterable[StackRun]) -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    for run in runs:
        for _, obj in kubernetes_objects(run):
            seen.setdefault(json.dumps(obj, sort_keys=True), obj)
    return list(seen.values())


@pytest.fixture(scope="session")
def checkov_report(declared_runs: dict[str, StackRun]) -> Report:
    return run_checkov(distinct_objects(declared_runs.values()))


def test_checkov_finds_nothing(checkov_report: Report) -> None:
    assert checkov_report.objects >= 30, checkov_report.objects
    assert checkov_report.passed > 0
    failed = [f for f in checkov_report.failed if f.check_id not in RUN_LEVEL_EXCLUSIONS]
    assert not failed, "\n".join(f"{f.resource}: {f.check_id}" for f in failed)
    print(  # the figures for the record (-rA shows them)
        f"checkov: {checkov_report.objects} distinct objects, {checkov_report.passed} checks "
        f"passed, 0 failed, {len(checkov_report.skipped)} skipped"
    )


def test_every_skip_is_expected_and_has_a_reason(checkov_report: Report) -> None:
    skips = {(f.resource, f.check_id) for f in checkov_report.skipped}
    assert skips == EXPECTED_SKIPS
    for finding in checkov_report.skipped:
        assert len(finding.comment) > 20, finding  # a reason, not "No comment provided"
    print(f"checkov: {len(skips)} skips on {len({r for r, _ in skips})} objects")


def test_run_level_exclusions_are_still_needed(checkov_report: Report) -> None:
    """An exclusion nothing fails any more is stale: remove it from RUN_LEVEL_EXCLUSIONS."""
    failing = {f.check_id for f in checkov_report.failed}
    assert set(RUN_LEVEL_EXCLUSIONS) <= failing, set(RUN_LEVEL_EXCLUSIONS) - failing


def test_a_privileged_or_unhardened_container_fails(homelab_run: StackRun) -> None:
    """The check can fail: the Ollama Deployment made privileged, and the Open WebUI one with
    its container's security context and limits removed, each fail the checks they break."""
    objects = dict(kubernetes_objects(homelab_run))
    privileged = copy.deepcopy(objects["ollama-deployment"])
    container = privileged["spec"]["template"]["spec"]["containers"][0]
    container["securityContext"]["privileged"] = True
    bare = copy.deepcopy(objects["open-webui-deployment"])
    container = bare["spec"]["template"]["spec"]["containers"][0]
    del container["securityContext"]
    del container["resources"]["limits"]
    report = run_checkov([privileged, bare])
    failed = {(f.resource, f.check_id) for f in report.failed}
    assert ("Deployment.llm.ollama", "CKV_K8S_16") in failed  # privileged
    for check in ("CKV_K8S_20", "CKV_K8S_22", "CKV_K8S_28", "CKV_K8S_37", "CKV_K8S_11"):
        assert ("Deployment.open-webui.open-webui", check) in failed, check
