"""Test harness: the one ``set_mocks`` of the session, and whole-stack runs shared by the tests.

The mocks, the recording monitor and the stack runner live in ``tools/offline.py`` because the
offline plan uses the very same ones. Stack-level tests assert on the recorded registrations
(plain data, so a failing assert fails the test); component-level tests build a component and
assert inside ``.apply`` under ``@pulumi.runtime.test``.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests import fixture_configs
from tools import mocks, offline

# Fixtures of the tests of commands that talk to a cluster (`serve`: a loopback Kubernetes API)
# or to the backup bucket (`backup_s3`: a loopback moto S3 filled as the homelab fills it).
pytest_plugins = ["tests.fake_kube_api", "tests.backup_store"]

# The single set_mocks of the test session (set_mocks is process-global).
MOCKS, MONITOR = mocks.install_mocks()


@pytest.fixture(scope="session")
def aws_gpu_run() -> offline.StackRun:
    """aws-gpu evaluated once with the example config of Pulumi.aws-gpu.yaml."""
    return offline.run_stack("aws-gpu")


def _run_homelab(
    aws_gpu_run: offline.StackRun, overrides: dict[str, Any] | None = None
) -> offline.StackRun:
    """homelab, its StackReference served the exports of the example aws-gpu run (what a fresh
    run of it would export: the runs are deterministic) instead of running aws-gpu again."""
    offline.serve(aws_gpu_run)
    return offline.run_stack("homelab", overrides)


@pytest.fixture
def aws_gpu_served(aws_gpu_run: offline.StackRun) -> offline.StackRun:
    """The example aws-gpu run as the deployed aws-gpu stack a homelab run reads (instead of
    running aws-gpu again: the runs are deterministic)."""
    offline.serve(aws_gpu_run)
    return aws_gpu_run


@pytest.fixture(scope="session")
def homelab_run(aws_gpu_run: offline.StackRun) -> offline.StackRun:
    """homelab evaluated once, reading the example aws-gpu run's exports."""
    return _run_homelab(aws_gpu_run)


@pytest.fixture(scope="session")
def valid_fixture_runs(aws_gpu_run: offline.StackRun) -> dict[str, offline.StackRun]:
    """Every valid fixture config (tests/fixtures/valid/) evaluated once, by file stem; homelab
    ones read the example aws-gpu run's exports."""
    runs = {}
    for path in fixture_configs.all_fixtures("valid"):
        fixture = fixture_configs.load(path)
        if fixture.stack == "homelab":
            runs[path.stem] = _run_homelab(aws_gpu_run, fixture.overrides)
        else:
            runs[path.stem] = offline.run_stack(fixture.stack, fixture.overrides)
    return runs


@pytest.fixture(scope="session")
def declared_runs(
    aws_gpu_run: offline.StackRun,
    homelab_run: offline.StackRun,
    valid_fixture_runs: dict[str, offline.StackRun],
) -> dict[str, offline.StackRun]:
    """Everything the program can declare as far as the tests know: both example stacks and
    every valid fixture (which turn optional parts such as Rancher on), by label."""
    return {
        "aws-gpu": aws_gpu_run,
        "homelab": homelab_run,
        **{f"fixture {stem}": run for stem, run in valid_fixture_runs.items()},
    }


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print the charts that may be declared without upstream data, on every run."""
    from tests.upstream_data import CHARTS_WITHOUT_DATA, UPSTREAM

    terminalreporter.write_sep("-", "charts without upstream data (tests/upstream_data.py)")
    terminalreporter.write_line(f"upstream data: {UPSTREAM}")
    if not CHARTS_WITHOUT_DATA:
        terminalreporter.write_line("CHARTS_WITHOUT_DATA: none (every declared chart has data)")
    for (chart, version), reason in sorted(CHARTS_WITHOUT_DATA.items()):
        terminalreporter.write_line(f"CHARTS_WITHOUT_DATA: {chart} {version}: {reason}")
