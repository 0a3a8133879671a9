"""The PR comment (tools/pr_comment.py) on real offline plans: two plans of aws-gpu that differ by
one resource, rendered through the command line the preview workflow runs."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from tools import offline, plan, pr_comment


@pytest.fixture(scope="module")
def head_plan(aws_gpu_run: offline.StackRun) -> dict[str, Any]:
    # The same JSON `./dev plan aws-gpu --json` writes.
    return json.loads(json.dumps(plan.plan_json(aws_gpu_run), sort_keys=True))


def _write(directory: Path, stack: str, data: dict[str, Any]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{stack}.json").write_text(json.dumps(data))


def test_a_plan_with_one_more_resource_is_named_in_the_comment(
    head_plan: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    added = next(
        r for r in head_plan["resources"] if r["type"] == "aws:s3/bucketPolicy:BucketPolicy"
    )
    base_plan = copy.deepcopy(head_plan)
    base_plan["resources"] = [r for r in base_plan["resources"] if r["urn"] != added["urn"]]
    base_plan["resourceCount"] -= 1
    for stack, data in (("aws-gpu", base_plan), ("homelab", head_plan | {"stack": "homelab"})):
        _write(tmp_path / "base", stack, data)
    for stack, data in (("aws-gpu", head_plan), ("homelab", head_plan | {"stack": "homelab"})):
        _write(tmp_path / "head", stack, data)

    code = pr_comment.main(
        [
            "--base",
            str(tmp_path / "base"),
            "--head",
            str(tmp_path / "head"),
            "--head-ref",
            "5d6e7f8",
        ]
    )
    comment = capsys.readouterr().out

    assert code == 0
    assert comment.startswith(pr_comment.MARKER)
    count = head_plan["resourceCount"]
    assert f"| aws-gpu | {count - 1} → {count} | 1 added |" in comment
    assert f"| homelab | {count} → {count} | no change |" in comment
    assert f"- `aws:s3/bucketPolicy:BucketPolicy` **`{added['name']}`**" in comment
    assert "**Removed**" not in comment
    assert "**Changed**" not in comment
    assert "`5d6e7f8`" in comment


def test_changed_inputs_are_listed_with_a_diff_of_changed_text(head_plan: dict[str, Any]) -> None:
    base_plan = copy.deepcopy(head_plan)
    policy = next(
        r for r in base_plan["resources"] if r["type"] == "aws:s3/bucketPolicy:BucketPolicy"
    )
    document = json.loads(policy["inputs"]["policy"])
    document["Statement"][0]["Action"] = "s3:GetObject"
    policy["inputs"]["policy"] = json.dumps(document, indent=2)
    diff = pr_comment.diff_stack("aws-gpu", base_plan, head_plan)
    assert [(r["name"], paths) for r, paths, _ in diff.changed] == [(policy["name"], ["policy"])]
    comment = pr_comment.render([diff], "base", "head")
    assert "1 changed" in comment
    assert '-      "Action": "s3:GetObject",' in comment
    assert '+      "Action": "s3:*",' in comment


def test_a_failed_plan_and_a_huge_diff_still_give_a_postable_comment(
    head_plan: dict[str, Any],
) -> None:
    failed = pr_comment.diff_stack("homelab", None, head_plan)
    assert "the offline plan failed on the base" in pr_comment.render([failed], "b", "h")
    empty = head_plan | {"resources": [], "resourceCount": 0}
    big = pr_comment.diff_stack("aws-gpu", empty, head_plan)
    big.added = big.added * 400
    body = pr_comment.render([big], "b", "h")
    assert len(body) <= pr_comment.MAX_COMMENT_CHARS
    assert body.rstrip().endswith(
        "*(truncated: the full diff is in the workflow's job summary artifact)*"
    )


def test_renaming_a_resource_shows_as_remove_and_add(head_plan: dict[str, Any]) -> None:
    base_plan = copy.deepcopy(head_plan)
    resource = next(r for r in base_plan["resources"] if r["type"] == "aws:ec2/vpc:Vpc")
    resource["urn"] = resource["urn"].replace(resource["name"], "old-vpc")
    resource["name"] = "old-vpc"
    diff = pr_comment.diff_stack("aws-gpu", base_plan, head_plan)
    assert [r["name"] for r in diff.removed] == ["old-vpc"]
    assert [r["type"] for r in diff.added] == ["aws:ec2/vpc:Vpc"]
