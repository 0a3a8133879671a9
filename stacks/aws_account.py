"""The aws-gpu stack's one AWS provider and the cost tags it puts on every taggable resource."""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from stacks.config import AwsGpuConfig

COST_TAG_KEY = "Project"
"""Default tag the budget filters on."""


def default_tags(config: AwsGpuConfig) -> dict[str, str]:
    """Cost tags on every taggable resource; ``aws.tags`` may add to them (or override)."""
    return {
        COST_TAG_KEY: "hybridgpu",
        "Stack": pulumi.get_stack(),
        "ManagedBy": "pulumi",
        **config.aws.tags,
    }


def aws_provider(config: AwsGpuConfig) -> aws.Provider:
    """The one AWS provider of the stack; its default tags put cost tags on every taggable
    resource (https://www.pulumi.com/registry/packages/aws/api-docs/provider/#default_tags).
    Components add their own ``Role`` tag, which the provider merges with these."""
    return aws.Provider(
        "aws",
        region=config.aws.region,
        default_tags=aws.ProviderDefaultTagsArgs(tags=default_tags(config)),
    )
