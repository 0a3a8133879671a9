"""One IAM policy shape for "this principal may use one folder of one bucket": ``s3:ListBucket``
on the bucket limited by ``s3:prefix`` to the folder, and the given object actions on the
folder's objects only. The model readers, the model uploader and both backup writers use it, so
the checks (one bucket ARN, a folder prefix, no wildcard) and the listing statement exist once.

Documents are built with ``json.dumps`` (no ``getPolicyDocument`` invoke: one less provider
round trip, and plain data to test); one action is a string, several a sorted list.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any


def check_bucket_arn(bucket_arn: str) -> None:
    if not bucket_arn.startswith("arn:") or "*" in bucket_arn or "/" in bucket_arn:
        raise ValueError(f"'{bucket_arn}' is not the ARN of one bucket")


def check_folder(prefix: str, what: str, example: str) -> None:
    if not prefix.endswith("/") or prefix.startswith("/") or "*" in prefix:
        raise ValueError(f"{what} prefix '{prefix}' must be a folder such as '{example}'")


def _one_or_sorted(actions: Sequence[str]) -> str | list[str]:
    return actions[0] if len(actions) == 1 else sorted(actions)


def prefix_access_policy(
    bucket_arn: str,
    prefix: str,
    *,
    object_actions: Sequence[str],
    sids: tuple[str, str],
    what: str,
    list_bare_folder: bool = False,
    head_bucket: bool = False,
) -> str:
    """``object_actions`` on ``<bucket_arn>/<prefix>*`` and a listing of ``prefix`` only.

    ``sids`` names the listing and the object statement. ``list_bare_folder`` also admits the
    folder's name without its slash as ``s3:prefix`` (k3s lists ``<folder>`` itself, which
    also matches sibling keys such as ``<folder>-x``: only where a client needs it).
    ``head_bucket`` admits a ListBucket request without any prefix (``StringLikeIfExists``):
    S3 authorises HeadBucket as ``s3:ListBucket``, and k3s and Velero check the bucket so.
    ``what`` and the example folder name the prefix in errors."""
    check_bucket_arn(bucket_arn)
    check_folder(prefix, what, f"{what}/")
    if not object_actions or any(not a.startswith("s3:") or "*" in a for a in object_actions):
        raise ValueError(f"{what}: object actions {list(object_actions)} must be exact s3 actions")
    prefixes = (
        [prefix.removesuffix("/"), f"{prefix}*"] if list_bare_folder else [prefix, f"{prefix}*"]
    )
    operator = "StringLikeIfExists" if head_bucket else "StringLike"
    list_sid, object_sid = sids
    document: dict[str, Any] = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": list_sid,
                "Effect": "Allow",
                "Action": "s3:ListBucket",
                "Resource": bucket_arn,
                "Condition": {operator: {"s3:prefix": prefixes}},
            },
            {
                "Sid": object_sid,
                "Effect": "Allow",
                "Action": _one_or_sorted(object_actions),
                "Resource": f"{bucket_arn}/{prefix}*",
            },
        ],
    }
    return json.dumps(document, indent=2, sort_keys=True)
