#!/bin/bash
# hybridgpu: the NVIDIA driver (Ubuntu's prebuilt, signed kernel modules: no DKMS build) and the
# NVIDIA container toolkit of a GPU worker on plain Ubuntu 24.04, pinned (values filled by
# components/aws/nvidia_driver.py, which cites where each pin comes from). The node agent runs it
# at every sync before the k3s installer, so at the first boot the driver and the toolkit are in
# place before the k3s agent first starts; afterwards (later syncs, every stop/start) it only
# checks them with dpkg. A failure fails the sync, which the timer retries.
set -euo pipefail
readonly branch="@DRIVER_BRANCH@"
readonly toolkit_version="@TOOLKIT_VERSION@"
readonly key_url="@KEY_URL@"
readonly key_fingerprint="@KEY_FINGERPRINT@"
readonly repo_url="@REPO_URL@"
readonly codename="@UBUNTU_CODENAME@"
readonly keyring=/usr/share/keyrings/nvidia-container-toolkit-keyring.gpg
readonly sources=/etc/apt/sources.list.d/nvidia-container-toolkit.list
kernel=$(uname -r)
readonly kernel

installed() {
  [ "$(dpkg-query --show --showformat='${db:Status-Status}' "$1" 2>/dev/null || true)" = installed ]
}

# A worker launched with nvidiaDriver 'preinstalled' (the Deep Learning AMI) that the setting was
# switched on: its image brings a working driver and toolkit, and the image is kept after launch.
if ! installed "nvidia-utils-${branch}-server" &&
  command -v nvidia-container-runtime >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then
  echo "hybridgpu: this image brings its own NVIDIA driver and toolkit; nothing installed" \
    "(a rebuilt worker gets them from Ubuntu: README 'Small worker image')"
  exit 0
fi

# shellcheck source=/dev/null
. /etc/os-release
if [ "${VERSION_CODENAME:-}" != "$codename" ]; then
  echo "hybridgpu: nvidiaDriver 'ubuntu' needs Ubuntu ${codename}, this is ${PRETTY_NAME:-unknown}" >&2
  exit 1
fi

# The branch's packages for the AWS kernel flavour: the -aws metapackage follows kernel updates,
# the package named after the running kernel is what this boot loads.
driver_packages=(
  "linux-modules-nvidia-${branch}-server-aws"
  "linux-modules-nvidia-${branch}-server-${kernel}"
  "nvidia-headless-no-dkms-${branch}-server"
  "nvidia-utils-${branch}-server"
)
toolkit_packages=(
  nvidia-container-toolkit
  nvidia-container-toolkit-base
  libnvidia-container-tools
  libnvidia-container1
)

missing=()
for package in "${driver_packages[@]}"; do
  installed "$package" || missing+=("$package")
done
for package in "${toolkit_packages[@]}"; do
  if ! installed "$package" ||
    [ "$(dpkg-query --show --showformat='${Version}' "$package")" != "$toolkit_version" ]; then
    missing+=("${package}=${toolkit_version}")
  fi
done

if [ "${#missing[@]}" -gt 0 ]; then
  echo "hybridgpu: installing ${missing[*]}"
  if [ ! -s "$keyring" ]; then
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    curl --fail --silent --show-error --location --proto '=https' --tlsv1.2 \
      --retry 5 --retry-delay 5 --output "$work/key.asc" "$key_url"
    # Trust the downloaded key only if its primary key is the pinned one.
    got=$(gpg --batch --show-keys --with-colons "$work/key.asc" |
      awk -F: '$1 == "pub" { want = 1; next } want && $1 == "fpr" { print $10; want = 0 }')
    if [ "$got" != "$key_fingerprint" ]; then
      echo "hybridgpu: ${key_url} has key ${got:-none}, not the pinned ${key_fingerprint}" >&2
      exit 1
    fi
    gpg --batch --yes --dearmor --output "$work/keyring.gpg" "$work/key.asc"
    install -m 0644 "$work/keyring.gpg" "$keyring"
  fi
  echo "deb [signed-by=${keyring}] ${repo_url}/stable/deb/\$(ARCH) /" >"$sources"
  export DEBIAN_FRONTEND=noninteractive
  # The image's own apt timers may hold the lock at first boot: wait for it.
  apt-get -o DPkg::Lock::Timeout=600 update -q
  apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${missing[@]}"
  # Unattended upgrades do not use NVIDIA's repository; the hold states the pin all the same.
  apt-mark hold "${toolkit_packages[@]}" >/dev/null
fi

modprobe nvidia
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
echo "hybridgpu: NVIDIA driver ${branch}-server and container toolkit ${toolkit_version} ready"
