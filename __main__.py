"""Entry point: one Pulumi project, two differently shaped stacks, chosen by the stack name."""

import pulumi

from stacks import aws_gpu, homelab
from stacks.config import ConfigError

STACKS = {"aws-gpu": aws_gpu.main, "homelab": homelab.main}

stack = pulumi.get_stack()
if stack not in STACKS:
    raise ConfigError(
        f"unknown stack '{stack}'; this project has the stacks {', '.join(sorted(STACKS))} "
        "(`pulumi stack select aws-gpu` or `pulumi stack init homelab`)"
    )
STACKS[stack]()
