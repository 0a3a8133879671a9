"""Runbooks (docs/runbooks/, issue #22): each page has Symptoms, Fix and Confirm sections, the
index lists every page, and every shell block passes shellcheck as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.real_tools import shellcheck

RUNBOOKS = Path(__file__).resolve().parent.parent / "docs" / "runbooks"
SECTIONS = ("## Symptoms", "## Fix", "## Confirm")
SHELL_BLOCK = re.compile(r"^ *```(?:bash|sh)\n(.*?)^ *```", re.MULTILINE | re.DOTALL)
PAGES = sorted(p for p in RUNBOOKS.glob("*.md") if p.name != "README.md")
EXPECTED = {
    "gpu-worker-will-not-start",
    "spot-interruption",
    "nebula-certificate-expiry",
    "liqo-peering-down",
    "etcd-member-lost",
    "restore-etcd-from-s3",
    "restore-namespace-velero",
    "adding-a-gpu-node",
    "upgrading-k3s",
    # one per alert (components/platform/monitoring_files/alerts.rules.yaml, runbook_url)
    "node-not-ready",
    "gpu-xid-error",
    "gpu-memory-exhausted",
    "cuda-validation-failed",
    "prometheus-target-down",
}


def shell_blocks(text: str) -> list[str]:
    """The ```bash blocks of a page, de-indented (blocks inside list items are indented)."""
    blocks = []
    for match in SHELL_BLOCK.finditer(text):
        lines = match.group(1).splitlines()
        indent = min((len(ln) - len(ln.lstrip()) for ln in lines if ln.strip()), default=0)
        blocks.append("\n".join(ln[indent:] for ln in lines) + "\n")
    return blocks


def section_problems(text: str) -> list[str]:
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    missing = [s for s in SECTIONS if s not in headings]
    if missing:
        return [f"missing {', '.join(missing)}"]
    order = [headings.index(s) for s in SECTIONS]
    return [] if order == sorted(order) else ["sections out of order"]


def test_the_incidents_of_the_issue_have_a_page() -> None:
    assert {p.stem for p in PAGES} == EXPECTED


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.stem)
def test_every_runbook_has_symptoms_fix_and_confirm(page: Path) -> None:
    text = page.read_text()
    assert text.startswith("# "), "a title first"
    assert section_problems(text) == []
    assert shell_blocks(text), "no command to run"


def test_a_page_without_a_section_fails() -> None:
    assert section_problems("# x\n## Symptoms\n## Confirm\n") == ["missing ## Fix"]
    assert section_problems("# x\n## Fix\n## Symptoms\n## Confirm\n") == ["sections out of order"]


@pytest.mark.parametrize("page", [*PAGES, RUNBOOKS / "README.md"], ids=lambda p: p.stem)
def test_shell_blocks_pass_shellcheck(page: Path, tmp_path: Path) -> None:
    for i, block in enumerate(shell_blocks(page.read_text())):
        shellcheck(block, tmp_path, f"{page.stem}-{i}.sh")


def test_shellcheck_catches_a_bad_block(tmp_path: Path) -> None:
    (block,) = shell_blocks("```bash\nrm -rf $dir/*\n```\n")
    with pytest.raises(AssertionError, match="SC2086"):
        shellcheck(block, tmp_path)


def test_the_index_links_every_page() -> None:
    index = (RUNBOOKS / "README.md").read_text()
    for page in PAGES:
        assert f"]({page.name})" in index, page.name
