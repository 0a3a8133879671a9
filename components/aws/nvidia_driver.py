"""Pure renderer for the NVIDIA driver and container toolkit of a GPU worker on plain Ubuntu 24.04
(``gpuWorker.nvidiaDriver: ubuntu``): an idempotent install script, pinned, published as one of
the worker's node files (components/aws/node_files.py) and run by the node agent before the k3s
installer. No Pulumi import.

Why a node file and not cloud-init: the worker's bootstrap user data is already ~13.5 KB of
EC2's 16 KB (it carries the node agent); the script, a unit and a drop-in took it to 18.9 KB.
The sync runs at the first boot (cloud-init's runcmd) and at every boot before k3s
(components/aws/templates/hybridgpu-node-sync.service), and its commands run in order, each
failure stopping the sync: so the k3s agent is installed and first started only after the
driver and the toolkit are in place, and a failed install is retried by the sync timer.

Why this is enough for k3s: at start, k3s's agent looks ``nvidia-container-runtime`` up in PATH
and adds it to its containerd config as the ``nvidia`` runtime (k3s-io/k3s
pkg/agent/containerd/nvidia.go, ``findNvidiaContainerRuntimes``, read at a stored commit: the
v1.33.5+k3s1 tag itself was not at hand; the detection is documented at
https://docs.k3s.io/advanced#nvidia-container-runtime-support, and ``default-runtime``, which
the worker's config sets, came with k3s-io/k3s#8700); the toolkit's package puts the
runtime in /usr/bin. The k3s installer then sets the toolkit's unprivileged-access
options (components/aws/templates/install-k3s.sh), which it does only if ``nvidia-ctk`` exists.

The pins:

* Driver: Ubuntu's ``-server`` (datacenter) branch 580, NVIDIA's long-term branch, through the
  archive's metapackages, which are themselves a stable pin of the branch (Ubuntu moves them only
  within it, with security fixes). The kernel modules are Canonical's prebuilt, signed
  ``linux-modules-nvidia-580-server-aws`` (no DKMS, no compiler on the node): in noble and
  noble-updates, the older -server branches' AWS module packages are now transitional packages
  depending on it (https://packages.ubuntu.com/noble/linux-modules-nvidia-550-server-aws), and
  ``nvidia-graphics-drivers-580-server`` builds ``nvidia-headless-no-dkms-580-server`` and
  ``nvidia-utils-580-server`` for noble (https://packages.ubuntu.com/source/noble/nvidia-graphics-drivers-580-server).
  An exact driver version is not pinned: Ubuntu replaces the branch's packages in place, so an
  old exact version disappears from the archive and a pinned first boot would fail.
* Toolkit: ``1.17.8-1`` of ``nvidia-container-toolkit``, ``nvidia-container-toolkit-base``,
  ``libnvidia-container-tools`` and ``libnvidia-container1``, the version NVIDIA's install guide
  pins (https://docs.nvidia.com/datacenter/cloud-native/container-toolkit/latest/install-guide.html,
  "With apt: Ubuntu, Debian"), from NVIDIA's repository at the URL that guide gives, signed by
  the key at ``https://nvidia.github.io/libnvidia-container/gpgkey``, whose primary key
  fingerprint is pinned here (``C95B321B61E88C1809C4F759DDCAE044F796ECB0``, "NVIDIA CORPORATION
  (Open Source Projects)", the key apt names as ``NO_PUBKEY DDCAE044F796ECB0`` without it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from components.base.files import NodeFile
from components.base.templates import render

SCRIPT_PATH = "/usr/local/sbin/hybridgpu-nvidia-driver"
FILE_NAME = "nvidia/install"
DRIVER_BRANCH = "580"
TOOLKIT_VERSION = "1.17.8-1"
TOOLKIT_KEY_URL = "https://nvidia.github.io/libnvidia-container/gpgkey"
TOOLKIT_KEY_FINGERPRINT = "C95B321B61E88C1809C4F759DDCAE044F796ECB0"
TOOLKIT_REPO_URL = "https://nvidia.github.io/libnvidia-container"
UBUNTU_CODENAME = "noble"
"""Ubuntu 24.04: the release whose archive the driver pins were checked against."""

INSTALL_GIB = 3
"""Disk the driver, its kernel modules (for the running and the next kernel) and the toolkit
take on the root volume: about 1.5 GB installed, plus apt's download cache while installing."""

_VERSION = re.compile(r"^\d+\.\d+\.\d+(-\d+)?$")
_FINGERPRINT = re.compile(r"^[0-9A-F]{40}$")


@dataclass(frozen=True)
class NvidiaDriverPins:
    """What the first boot installs; the defaults are the pins cited in the module docstring."""

    branch: str = DRIVER_BRANCH
    toolkit_version: str = TOOLKIT_VERSION
    key_url: str = TOOLKIT_KEY_URL
    key_fingerprint: str = TOOLKIT_KEY_FINGERPRINT
    repo_url: str = TOOLKIT_REPO_URL
    ubuntu_codename: str = UBUNTU_CODENAME

    def __post_init__(self) -> None:
        if not self.branch.isdigit():
            raise ValueError(f"driver branch {self.branch!r} is not a branch number such as 580")
        if not _VERSION.match(self.toolkit_version):
            raise ValueError(f"toolkit version {self.toolkit_version!r} is not like 1.17.8-1")
        if not _FINGERPRINT.match(self.key_fingerprint):
            raise ValueError("key fingerprint must be 40 upper-case hex digits")
        for url in (self.key_url, self.repo_url):
            if not url.startswith("https://") or url.endswith("/"):
                raise ValueError(f"{url!r} must be an https URL without a trailing '/'")
        if not self.ubuntu_codename.isalpha():
            raise ValueError(f"Ubuntu codename {self.ubuntu_codename!r} is not a word")


def render_install_script(pins: NvidiaDriverPins) -> str:
    return render(
        __file__,
        "hybridgpu-nvidia-driver.sh",
        {
            "DRIVER_BRANCH": pins.branch,
            "TOOLKIT_VERSION": pins.toolkit_version,
            "KEY_URL": pins.key_url,
            "KEY_FINGERPRINT": pins.key_fingerprint,
            "REPO_URL": pins.repo_url,
            "UBUNTU_CODENAME": pins.ubuntu_codename,
        },
    )


def driver_file(pins: NvidiaDriverPins) -> NodeFile:
    """The install script as a node file: the worker's agent runs it before the k3s installer."""
    return NodeFile(FILE_NAME, SCRIPT_PATH, "0755", render_install_script(pins))
