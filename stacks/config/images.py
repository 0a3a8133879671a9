"""The GPU worker's image: how an AMI is chosen, the two images the project knows (plain Ubuntu
24.04, AWS's Deep Learning Base AMI with the NVIDIA driver), which GPU families each driver source
supports, and the disk each takes (stacks/config/aws_gpu.py checks the worker's volume)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, model_validator

from components.aws.nvidia_driver import INSTALL_GIB as NVIDIA_DRIVER_GIB
from stacks.config.fields import Model


class AmiSelector(Model):
    """Either a fixed AMI id, or a lookup by owner + name pattern (most recent wins)."""

    id: str | None = Field(default=None, pattern=r"^ami-[0-9a-f]{8,17}$")
    owners: tuple[str, ...] = ()
    name_pattern: str | None = None
    architecture: Literal["x86_64", "arm64"] = "x86_64"

    @model_validator(mode="after")
    def _one_way(self) -> AmiSelector:
        if self.id is None and not (self.owners and self.name_pattern):
            raise ValueError("give either 'id' or both 'owners' and 'namePattern'")
        if self.id is not None and (self.owners or self.name_pattern):
            raise ValueError("give either 'id' or 'owners' + 'namePattern', not both")
        return self


# Canonical's Ubuntu 24.04 images (owner id from https://ubuntu.com/server/docs/cloud-images/amazon-ec2).
UBUNTU_2404_AMI = AmiSelector(
    owners=("099720109477",),
    name_pattern="ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*",
)
# AWS Deep Learning Base AMI with the NVIDIA driver and container toolkit preinstalled
# (https://docs.aws.amazon.com/dlami/latest/devguide/appendix-ami-release-notes.html).
NVIDIA_GPU_AMI = AmiSelector(
    owners=("amazon",),
    name_pattern="Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04) *",
)


# Graviton (arm64) families: a 'g' right after the generation digit (t4g, m7g, c7gn, ...).
GRAVITON_FAMILY = re.compile(r"^[a-z]+\d+g[a-z]*\.")
# The DLAMI "OSS Nvidia Driver" AMIs support G4dn, G5, G6, Gr6, G6e, P4d, P4de, P5, P5e, P5en and
# not P3/P3dn, whose V100 the driver branch dropped
# (https://docs.aws.amazon.com/dlami/latest/devguide/appendix-ami-release-notes.html).
DLAMI_UNSUPPORTED_FAMILIES = ("p3", "p3dn")
# nvidiaDriver 'ubuntu' (components/aws/nvidia_driver.py): the G families (no NVSwitch), their
# T4 (Turing), A10G (Ampere), L4 and L40S (Ada). The 580 branch is NVIDIA's current long-term
# data-center branch (NVIDIA/cloud-native-docs gpu-operator/release-notes.rst: GPU Operator
# defaults to 580.82.07); NVIDIA's own R580 supported-products table was not at hand, so the list
# is conservative. Not p4d/p4de/p5*: their NVSwitch needs NVIDIA Fabric Manager, which this
# install leaves out. Not p3/p3dn (V100): left to an image built for them. Those keep
# nvidiaDriver 'preinstalled' (or an ami.id).
UBUNTU_DRIVER_FAMILIES = ("g4dn", "g5", "g6", "g6e", "gr6")


# The Deep Learning Base AMI's root snapshot is 75 GB, and EC2 refuses a smaller root volume
# (InvalidBlockDeviceMapping); other AMIs: Ubuntu's 8 GiB at least.
DLAMI_SNAPSHOT_GIB = 75
MIN_AMI_GIB = 8
IMAGES_GIB = 10
"""Container images (Ollama's is ~4 GB unpacked), k3s, logs on the worker."""


def ami_gib(ami: AmiSelector) -> int:
    """The smallest root volume an image allows (its snapshot)."""
    return DLAMI_SNAPSHOT_GIB if ami == NVIDIA_GPU_AMI else MIN_AMI_GIB


def driver_gib(nvidia_driver: str) -> int:
    """What the first boot installs on the image: the NVIDIA driver and toolkit, or nothing."""
    return NVIDIA_DRIVER_GIB if nvidia_driver == "ubuntu" else 0
