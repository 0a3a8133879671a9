"""Entry point: one Pulumi project, two differently shaped stacks. A stack's shape comes from
``hybridgpu:role`` or its name (``aws-gpu``, ``homelab``, ``homelab-2``, ``aws-gpu-eu``, ...)."""

from stacks import aws_gpu, homelab
from stacks.config import STACK_AWS_GPU, STACK_HOMELAB, stack_role

STACKS = {STACK_AWS_GPU: aws_gpu.main, STACK_HOMELAB: homelab.main}

STACKS[stack_role()]()
