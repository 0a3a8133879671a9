"""Renewal windows: when a certificate (or any time-limited credential) is re-issued, decided by
the program from a fixed anchor and the current time (pure, no Pulumi).

Why not ``time.Rotating``: terraform-provider-time v0.12.1 (behind pulumiverse-time 0.1.1)
rotates only in ``Read`` (internal/provider/resource_time_rotating.go: ``RemoveResource`` when
``now`` is past the rotation time), and ``pulumi up`` never calls Read unless it refreshes; its
plan modifier fires only when the planned and stored values differ, which they never do with
unchanged inputs. A weekly ``pulumi up`` would report "no changes" until the certificates expire.

Here time is split into windows of ``validity - renew_before`` days counted from an anchor (a
``time.Static`` timestamp kept in state). Every ``pulumi up`` inside a window computes the same
validity (so nothing changes); the first one in the next window re-issues. Any credential issued
this way has at least ``renew_before`` days left at the time of every ``up``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

# Certificates start this much before their window: a node whose clock is somewhat behind the
# operator's must not see its brand-new certificate as "not yet valid" (Nebula's Expired() also
# rejects NotBefore in the future: slackhq/nebula@v1.9.5 cert/cert.go).
DEFAULT_BACKDATE = timedelta(hours=1)


@dataclass(frozen=True)
class Validity:
    """One issuance: the window index and the certificate's validity."""

    window: int
    not_before: datetime
    not_after: datetime


def parse_rfc3339(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def window_validity(
    *,
    anchor: datetime,
    now: datetime,
    validity_days: int,
    renew_before_days: int,
    window: int | None = None,
    backdate: timedelta = DEFAULT_BACKDATE,
) -> Validity:
    """Validity of the window ``now`` falls in (or of the explicit ``window`` index).

    ``now`` before ``anchor`` (the anchor is stamped by the provider a moment after the program
    read the clock) counts as window 0."""
    if not 0 < renew_before_days < validity_days:
        raise ValueError(
            f"renew_before_days ({renew_before_days}) must be between 0 and validity_days "
            f"({validity_days})"
        )
    period = timedelta(days=validity_days - renew_before_days)
    if window is None:
        window = max(0, (now - anchor) // period)
    if window < 0:
        raise ValueError(f"window index {window} is negative")
    start = anchor + window * period
    return Validity(
        window=window,
        not_before=start - backdate,
        not_after=start + timedelta(days=validity_days),
    )
