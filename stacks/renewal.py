"""The stack's renewal clock: one anchor timestamp in state and the current time.

``pulumi up`` and ``pulumi preview`` read the real clock. ``HYBRIDGPU_NOW`` (RFC 3339) overrides
it, to rehearse what a later ``up`` would renew (``HYBRIDGPU_NOW=2027-12-01T00:00:00Z pulumi
preview``); the offline tools set it so their plans do not depend on the day they run.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import pulumi
import pulumiverse_time as time

from components.base.renewal import Validity, parse_rfc3339, window_validity

CLOCK_ENV = "HYBRIDGPU_NOW"


def now() -> datetime:
    override = os.environ.get(CLOCK_ENV)
    if override:
        try:
            return parse_rfc3339(override)
        except ValueError:
            raise ValueError(
                f"{CLOCK_ENV}='{override}' is not an RFC 3339 time (e.g. 2027-12-01T00:00:00Z)"
            ) from None
    return datetime.now(UTC)


class RenewalClock:
    """Windows of every time-limited credential of the stack hang off one anchor: a
    ``time.Static`` stamped at the first ``up`` and never changed afterwards."""

    def __init__(self, name: str = "renewal-anchor") -> None:
        self.anchor = time.Static(name)
        self.now = now()

    def validity(self, validity_days: int, renew_before_days: int) -> pulumi.Output[Validity]:
        """The validity of what is issued in the current window."""
        current_time = self.now
        return self.anchor.rfc3339.apply(
            lambda anchor: window_validity(
                anchor=parse_rfc3339(anchor),
                now=current_time,
                validity_days=validity_days,
                renew_before_days=renew_before_days,
            )
        )

    def window(self, period_days: int) -> pulumi.Output[int]:
        """Index of the current ``period_days`` window since the anchor (0 in the first):
        a trigger for what must be redone periodically."""
        current_time = self.now
        period = timedelta(days=period_days)
        return self.anchor.rfc3339.apply(
            lambda anchor: max(0, (current_time - parse_rfc3339(anchor)) // period)
        )

    def previous_validity(
        self, validity_days: int, renew_before_days: int
    ) -> pulumi.Output[Validity | None]:
        """The validity of what was issued in the window before the current one (None in the
        first window): still valid for a while after a renewal."""
        current_time = self.now

        def compute(anchor_text: str) -> Validity | None:
            anchor = parse_rfc3339(anchor_text)
            current = window_validity(
                anchor=anchor,
                now=current_time,
                validity_days=validity_days,
                renew_before_days=renew_before_days,
            )
            if current.window == 0:
                return None
            return window_validity(
                anchor=anchor,
                now=current_time,
                validity_days=validity_days,
                renew_before_days=renew_before_days,
                window=current.window - 1,
            )

        return self.anchor.rfc3339.apply(compute)
