"""The aws-gpu stack: VPC, always-on control node (Nebula lighthouse + k3s server), stoppable GPU
worker, S3 model bucket and budget. It owns the Nebula mesh CA."""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from stacks.config import STACK_AWS_GPU, AwsGpuConfig, load_aws_gpu_config
from stacks.outputs import export_stack_outputs


def aws_provider(config: AwsGpuConfig) -> aws.Provider:
    """The one AWS provider of the stack; its default tags put cost tags on every taggable
    resource (https://www.pulumi.com/registry/packages/aws/api-docs/provider/#default_tags)."""
    tags = {
        "Project": "hybridgpu",
        "Stack": pulumi.get_stack(),
        "ManagedBy": "pulumi",
        **config.aws.tags,
    }
    return aws.Provider(
        "aws",
        region=config.aws.region,
        default_tags=aws.ProviderDefaultTagsArgs(tags=tags),
    )


def main() -> None:
    config = load_aws_gpu_config()
    network = config.project.network
    aws_provider(config)
    export_stack_outputs(
        STACK_AWS_GPU,
        {
            "region": config.aws.region,
            "networkPlan": {k: str(v) for k, v in network.named_ranges().items()},
            "nebulaCaCert": "",
            "nebulaCaKey": "",
            "nebulaLighthouses": {},
        },
    )
