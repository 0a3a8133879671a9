"""Test harness: the one ``set_mocks`` of the session, and whole-stack runs shared by the tests.

The mocks, the recording monitor and the stack runner live in ``tools/offline.py`` because the
offline plan uses the very same ones. Stack-level tests assert on the recorded registrations
(plain data, so a failing assert fails the test); component-level tests build a component and
assert inside ``.apply`` under ``@pulumi.runtime.test``.
"""

from __future__ import annotations

import pytest

from tools import mocks, offline

# The single set_mocks of the test session (set_mocks is process-global).
MOCKS, MONITOR = mocks.install_mocks()


@pytest.fixture(scope="session")
def aws_gpu_run() -> offline.StackRun:
    """aws-gpu evaluated once with the example config of Pulumi.aws-gpu.yaml."""
    return offline.run_stack("aws-gpu")


@pytest.fixture(scope="session")
def homelab_run() -> offline.StackRun:
    """homelab evaluated once, after a fresh aws-gpu run feeds its StackReference."""
    return offline.run_with_dependencies("homelab")
