"""Monthly cost budget of the project, with e-mail alerts.

Scope: costs tagged ``Project=<value>`` (the provider's default tag on every resource of the
stack), so other workloads in the same account do not trigger or hide alerts. AWS only sees a
tag in billing data once it is activated as a cost allocation tag (Billing console -> Cost
allocation tags, or ``aws ce update-cost-allocation-tags-status``); until then the filtered
budget reports $0. It is not activated from here because activation fails until the tag key
has appeared in billing data, up to 24 hours after the first tagged resource
(https://docs.aws.amazon.com/awsaccountbilling/latest/aboutv2/activating-tags.html). Untaggable
costs (data transfer, some EBS snapshot charges) are not counted either; the FORECASTED alert
at 100% gives early warning for the tagged part.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

ROLE_TAG = "budget"
# AWS Budgets limits: 10 notifications per budget, 10 e-mail subscribers per notification
# (https://docs.aws.amazon.com/aws-cost-management/latest/APIReference/API_budgets_Notification.html).
MAX_NOTIFICATIONS = 10
MAX_EMAILS = 10


def tag_filter_value(key: str, value: str) -> str:
    """``TagKeyValue`` filter value of a user-defined tag: ``user:<key>$<value>``
    (https://docs.aws.amazon.com/cost-management/latest/userguide/budgets-create-filters.html)."""
    if not key or "$" in key or "$" in value:
        raise ValueError(f"cannot filter on tag {key!r}={value!r}")
    return f"user:{key}${value}"


def limit_amount(usd: float) -> str:
    """The API takes the amount as a decimal string; cents are the finest unit."""
    if usd <= 0:
        raise ValueError(f"monthly limit {usd} must be positive")
    return f"{usd:.2f}"


@dataclass(frozen=True)
class CostBudgetArgs:
    monthly_limit_usd: float
    thresholds_percent: Sequence[float]
    """One ACTUAL alert per threshold (percent of the limit)."""
    emails: Sequence[str]
    cost_tag: tuple[str, str] | None = None
    """(key, value) of the tag that scopes the budget; ``None`` budgets the whole account."""
    name_prefix: str = "hybridgpu-"

    def __post_init__(self) -> None:
        limit_amount(self.monthly_limit_usd)
        if not self.thresholds_percent or any(t <= 0 for t in self.thresholds_percent):
            raise ValueError("thresholds_percent must be positive percentages")
        if len(self.thresholds_percent) + 1 > MAX_NOTIFICATIONS:
            raise ValueError(
                f"{len(self.thresholds_percent)} thresholds plus the forecast alert exceed AWS's "
                f"{MAX_NOTIFICATIONS} notifications per budget"
            )
        if not 1 <= len(self.emails) <= MAX_EMAILS:
            raise ValueError(f"give 1 to {MAX_EMAILS} e-mail addresses")
        if self.cost_tag is not None:
            tag_filter_value(*self.cost_tag)


class CostBudget(pulumi.ComponentResource):
    """An AWS Budgets COST budget: ACTUAL alerts at each threshold, FORECASTED at 100%."""

    budget_name: pulumi.Output[str]

    def __init__(
        self, name: str, args: CostBudgetArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("hybridgpu:aws:CostBudget", name, None, opts)
        emails = list(args.emails)
        notifications: list[aws.budgets.BudgetNotificationArgsDict] = [
            {
                "notification_type": "ACTUAL",
                "threshold_type": "PERCENTAGE",
                "comparison_operator": "GREATER_THAN",
                "threshold": float(threshold),
                "subscriber_email_addresses": emails,
            }
            for threshold in args.thresholds_percent
        ]
        notifications.append(
            {
                "notification_type": "FORECASTED",
                "threshold_type": "PERCENTAGE",
                "comparison_operator": "GREATER_THAN",
                "threshold": 100.0,
                "subscriber_email_addresses": emails,
            }
        )
        cost_filters: list[aws.budgets.BudgetCostFilterArgsDict] | None = (
            [{"name": "TagKeyValue", "values": [tag_filter_value(*args.cost_tag)]}]
            if args.cost_tag is not None
            else None
        )
        budget = aws.budgets.Budget(
            f"{name}-budget",
            # A prefix, not a fixed name: a replacement is created before the old one is deleted.
            name_prefix=args.name_prefix,
            budget_type="COST",
            time_unit="MONTHLY",
            limit_amount=limit_amount(args.monthly_limit_usd),
            limit_unit="USD",
            cost_filters=cost_filters,
            notifications=notifications,
            tags={"Name": f"{name}-budget", "Role": ROLE_TAG},
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.budget_name = budget.name
        self.register_outputs({"budgetName": self.budget_name})
