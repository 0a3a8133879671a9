"""Facts about EC2 GPU instance types the config checks against: which families carry an NVIDIA
GPU (and which), and how many GPUs a size has."""

from __future__ import annotations

import re
from collections.abc import Mapping

# NVIDIA GPU instance families and the GPU they carry
# (https://docs.aws.amazon.com/ec2/latest/instancetypes/ac.html). AMD (g4ad) and Inferentia/
# Trainium families are deliberately absent: the NVIDIA device plugin cannot use them.
NVIDIA_GPU_FAMILIES: Mapping[str, str] = {
    "g4dn": "nvidia-t4",
    "g5": "nvidia-a10g",
    "g6": "nvidia-l4",
    "g6e": "nvidia-l40s",
    "gr6": "nvidia-l4",
    "p3": "nvidia-v100",
    "p3dn": "nvidia-v100",
    "p4d": "nvidia-a100",
    "p4de": "nvidia-a100",
    "p5": "nvidia-h100",
    "p5e": "nvidia-h200",
    "p5en": "nvidia-h200",
}
# Sizes with more than one GPU (same source); every other size of these families has one.
MULTI_GPU_SIZES: Mapping[str, int] = {
    "g4dn.12xlarge": 4,
    "g4dn.metal": 8,
    "g5.12xlarge": 4,
    "g5.24xlarge": 4,
    "g5.48xlarge": 8,
    "g6.12xlarge": 4,
    "g6.24xlarge": 4,
    "g6.48xlarge": 8,
    "g6e.12xlarge": 4,
    "g6e.24xlarge": 4,
    "g6e.48xlarge": 8,
    "gr6.8xlarge": 1,
    "p3.8xlarge": 4,
    "p3.16xlarge": 8,
    "p3dn.24xlarge": 8,
    "p4d.24xlarge": 8,
    "p4de.24xlarge": 8,
    "p5.48xlarge": 8,
    "p5e.48xlarge": 8,
    "p5en.48xlarge": 8,
}
INSTANCE_TYPE_PATTERN = re.compile(r"^([a-z][a-z0-9-]*)\.([a-z0-9-]+)$")


def gpu_family(instance_type: str) -> str | None:
    """The family of an NVIDIA GPU instance type, or None if it is not one."""
    match = INSTANCE_TYPE_PATTERN.match(instance_type)
    if not match or match.group(1) not in NVIDIA_GPU_FAMILIES:
        return None
    return match.group(1)
