"""The NVIDIA driver install of a worker on plain Ubuntu (components/aws/nvidia_driver.py): the
pins as rendered, shellcheck, and the script run for real (bash) against fake apt, dpkg, gpg and
curl, for the states a node meets: first boot, every later sync or stop/start, a new kernel, a
key that is not the pinned one, the Deep Learning AMI (a day-2 switch), another Ubuntu."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from components.aws import nvidia_driver as nd
from components.base.templates import PLACEHOLDER
from tests.real_tools import require, shellcheck

TEMPLATE = Path(nd.__file__).parent / "templates" / "hybridgpu-nvidia-driver.sh"
PINS = nd.NvidiaDriverPins()
KERNEL = "6.8.0-1031-aws"
DRIVER_PACKAGES = [
    "linux-modules-nvidia-580-server-aws",
    f"linux-modules-nvidia-580-server-{KERNEL}",
    "nvidia-headless-no-dkms-580-server",
    "nvidia-utils-580-server",
]
TOOLKIT_PACKAGES = [
    "nvidia-container-toolkit",
    "nvidia-container-toolkit-base",
    "libnvidia-container-tools",
    "libnvidia-container1",
]

# Fakes: $FAKE_ROOT/dpkg.json is the package database {name: version}; every call is logged.
FAKES = {
    "uname": 'cat "$FAKE_ROOT/kernel"',
    "dpkg-query": r"""
import json, os, sys
db = json.load(open(os.path.join(os.environ["FAKE_ROOT"], "dpkg.json")))
args = sys.argv[1:]
fmt = next(a for a in args if a.startswith("--showformat="))
name = args[-1]
if name not in db:
    sys.exit(1)
print("installed" if "Status" in fmt else db[name], end="")
""",
    "apt-get": r"""
import json, os, sys
root = os.environ["FAKE_ROOT"]
open(os.path.join(root, "calls"), "a").write("apt-get " + " ".join(sys.argv[1:]) + "\n")
if "install" in sys.argv:
    path = os.path.join(root, "dpkg.json")
    db = json.load(open(path))
    for arg in sys.argv[sys.argv.index("install") + 1:]:
        if not arg.startswith("-"):
            name, _, version = arg.partition("=")
            db[name] = version or "580.95.05-0ubuntu0.24.04.1"
    json.dump(db, open(path, "w"))
""",
    "apt-mark": 'echo "apt-mark $*" >>"$FAKE_ROOT/calls"',
    "curl": 'while [ $# -gt 0 ]; do [ "$1" = --output ] && out=$2; shift; done\n'
    'echo "KEY" >"$out"; echo "curl" >>"$FAKE_ROOT/calls"',
    # --show-keys prints the served key's primary fingerprint as gpg's colon format does
    "gpg": 'if [[ " $* " == *" --show-keys "* ]]; then\n'
    '  printf "pub:-:4096:1:DDCAE044F796ECB0:1:::-:::scESC::::::23::0:\\n"\n'
    '  printf "fpr:::::::::%s:\\n" "$(cat "$FAKE_ROOT/served-fingerprint")"\n'
    '  printf "uid:-::::1::X::NVIDIA CORPORATION (Open Source Projects):::::::::0:\\n"\n'
    "else\n"
    '  while [ $# -gt 0 ]; do [ "$1" = --output ] && out=$2; shift; done; echo KEYRING >"$out"\n'
    "fi",
    "modprobe": 'echo "modprobe $*" >>"$FAKE_ROOT/calls"',
    "nvidia-smi": '[ -f "$FAKE_ROOT/gpu" ] && echo "Tesla T4, 580.95.05"',
}


def _node(tmp_path: Path, codename: str = "noble", db: dict[str, str] | None = None) -> Path:
    root = tmp_path / "root"
    (root / "etc/apt/sources.list.d").mkdir(parents=True)
    (root / "usr/share/keyrings").mkdir(parents=True)
    (root / "etc/os-release").write_text(
        f'PRETTY_NAME="Ubuntu {codename}"\nVERSION_CODENAME={codename}\n'
    )
    (root / "dpkg.json").write_text(json.dumps(db or {}))
    (root / "kernel").write_text(KERNEL)
    (root / "served-fingerprint").write_text(nd.TOOLKIT_KEY_FINGERPRINT)
    (root / "gpu").write_text("")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in FAKES.items():
        shebang = "#!/usr/bin/env python3" if body.lstrip().startswith("import") else "#!/bin/bash"
        (bin_dir / name).write_text(f"{shebang}\n{body}\n")
        (bin_dir / name).chmod(0o755)
    return root


def _run(
    tmp_path: Path, script: str | None = None, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    root = tmp_path / "root"
    (root / "calls").write_text("")
    text = script if script is not None else nd.render_install_script(PINS)
    # The node's absolute paths, under the fake root.
    for path in ("/etc/os-release", "/usr/share/keyrings/", "/etc/apt/sources.list.d/"):
        assert path in text, path
        text = text.replace(path, f"{root}{path}")
    env = {
        **os.environ,
        "PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin",
        "FAKE_ROOT": str(root),
        **(extra_env or {}),
    }
    return subprocess.run(
        ["bash", "-c", text], capture_output=True, text=True, env=env, timeout=60, check=False
    )


def _calls(tmp_path: Path) -> list[str]:
    return (tmp_path / "root/calls").read_text().splitlines()


def _db(tmp_path: Path) -> dict[str, str]:
    return json.loads((tmp_path / "root/dpkg.json").read_text())


def test_the_pins_are_rendered_and_nothing_is_left_to_fill() -> None:
    script = nd.render_install_script(PINS)
    assert not PLACEHOLDER.search(script)
    assert 'readonly branch="580"' in script
    assert 'readonly toolkit_version="1.17.8-1"' in script
    assert f'readonly key_fingerprint="{nd.TOOLKIT_KEY_FINGERPRINT}"' in script
    assert 'readonly key_url="https://nvidia.github.io/libnvidia-container/gpgkey"' in script
    assert 'readonly codename="noble"' in script
    file = nd.driver_file(PINS)
    assert (file.path, file.mode, file.content) == (nd.SCRIPT_PATH, "0755", script)
    assert file.restart == (), "an installer, not a unit's file"


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"branch": "580-server"}, "not a branch number"),
        ({"toolkit_version": "latest"}, "is not like 1.17.8-1"),
        ({"key_fingerprint": "ddcae044f796ecb0"}, "40 upper-case hex digits"),
        ({"key_url": "http://nvidia.github.io/libnvidia-container/gpgkey"}, "https URL"),
        ({"repo_url": "https://nvidia.github.io/libnvidia-container/"}, "trailing"),
        ({"ubuntu_codename": "24.04"}, "not a word"),
    ],
)
def test_pins_are_checked(changes: dict[str, str], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        nd.NvidiaDriverPins(**changes)


def test_shellcheck_accepts_the_template_and_the_rendered_script(tmp_path: Path) -> None:
    shellcheck(TEMPLATE.read_text(), tmp_path, "hybridgpu-nvidia-driver.template.sh")
    shellcheck(nd.render_install_script(PINS), tmp_path, "hybridgpu-nvidia-driver.sh")


def test_first_boot_installs_the_pinned_packages_from_the_signed_repository(
    tmp_path: Path,
) -> None:
    root = _node(tmp_path)
    result = _run(tmp_path)
    assert result.returncode == 0, result.stderr
    calls = _calls(tmp_path)
    install = next(c for c in calls if c.startswith("apt-get") and " install " in c)
    assert "--no-install-recommends" in install
    wanted = [*DRIVER_PACKAGES, *(f"{p}=1.17.8-1" for p in TOOLKIT_PACKAGES)]
    assert install.split()[-len(wanted) :] == wanted
    assert calls.index(next(c for c in calls if " update" in c)) < calls.index(install)
    assert f"apt-mark hold {' '.join(TOOLKIT_PACKAGES)}" in calls
    assert "modprobe nvidia" in calls
    sources = (root / "etc/apt/sources.list.d/nvidia-container-toolkit.list").read_text()
    # (the keyring's path is under the fake root here, like every absolute path of the node)
    assert sources == (
        f"deb [signed-by={root}/usr/share/keyrings/nvidia-container-toolkit-keyring.gpg] "
        "https://nvidia.github.io/libnvidia-container/stable/deb/$(ARCH) /\n"
    )
    assert (root / "usr/share/keyrings/nvidia-container-toolkit-keyring.gpg").read_text() == (
        "KEYRING\n"
    )
    assert "Tesla T4" in result.stdout


def test_a_later_boot_installs_nothing(tmp_path: Path) -> None:
    _node(tmp_path)
    assert _run(tmp_path).returncode == 0
    again = _run(tmp_path)
    assert again.returncode == 0, again.stderr
    assert not [c for c in _calls(tmp_path) if c.startswith(("apt-get", "curl"))]
    assert _calls(tmp_path) == ["modprobe nvidia"]


def test_a_new_kernel_gets_its_modules_and_a_drifted_toolkit_its_pin(tmp_path: Path) -> None:
    _node(tmp_path)
    assert _run(tmp_path).returncode == 0
    (tmp_path / "root/kernel").write_text("6.8.0-1040-aws")
    db = _db(tmp_path)
    db["libnvidia-container1"] = "1.18.0-1"
    (tmp_path / "root/dpkg.json").write_text(json.dumps(db))
    result = _run(tmp_path)
    assert result.returncode == 0, result.stderr
    install = next(c for c in _calls(tmp_path) if " install " in c)
    assert install.split()[-2:] == [
        "linux-modules-nvidia-580-server-6.8.0-1040-aws",
        "libnvidia-container1=1.17.8-1",
    ]
    assert not [c for c in _calls(tmp_path) if c == "curl"], "the keyring is kept"


def test_a_key_other_than_the_pinned_one_is_refused(tmp_path: Path) -> None:
    root = _node(tmp_path)
    (root / "served-fingerprint").write_text("0" * 40)
    result = _run(tmp_path)
    assert result.returncode != 0
    assert f"not the pinned {nd.TOOLKIT_KEY_FINGERPRINT}" in result.stderr
    assert not [c for c in _calls(tmp_path) if c.startswith("apt-get")]
    assert not (root / "etc/apt/sources.list.d/nvidia-container-toolkit.list").exists()
    assert not (root / "usr/share/keyrings/nvidia-container-toolkit-keyring.gpg").exists()


def test_the_deep_learning_ami_keeps_its_own_driver(tmp_path: Path) -> None:
    """A worker launched with 'preinstalled' whose setting was switched to 'ubuntu': its image
    (kept after launch) brings a driver and the runtime; the sync must not fail on it."""
    _node(tmp_path, codename="jammy")
    runtime = tmp_path / "bin/nvidia-container-runtime"
    runtime.write_text("#!/bin/sh\n")
    runtime.chmod(0o755)
    result = _run(tmp_path)
    assert result.returncode == 0, result.stderr
    assert "brings its own NVIDIA driver" in result.stdout
    assert _calls(tmp_path) == []


def test_another_ubuntu_without_a_driver_is_a_clear_error(tmp_path: Path) -> None:
    _node(tmp_path, codename="jammy")
    (tmp_path / "root/gpu").unlink()
    result = _run(tmp_path)
    assert result.returncode != 0
    assert "needs Ubuntu noble, this is Ubuntu jammy" in result.stderr
    assert _calls(tmp_path) == []


def test_the_fingerprint_check_reads_what_the_real_gpg_prints(tmp_path: Path) -> None:
    """The fakes above print gpg's colon format by hand; here the real gpg reads a real key
    (a throwaway one, pinned for this run): the served key passes, any other is refused."""
    gpg = require("gpg")
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    env = {**os.environ, "GNUPGHOME": str(home)}
    fingerprints = []
    for name in ("served", "other"):
        generate = [gpg, "--batch", "--passphrase", "", "--quick-gen-key", name, "ed25519"]
        subprocess.run(
            [*generate, "sign", "never"], env=env, capture_output=True, check=True, timeout=60
        )
        listing = subprocess.run(
            [gpg, "--batch", "--with-colons", "--list-keys", name],
            env=env, capture_output=True, text=True, check=True, timeout=60,
        ).stdout  # fmt: skip
        fingerprints.append(next(x.split(":")[9] for x in listing.splitlines() if x[:4] == "fpr:"))
    armored = subprocess.run(
        [gpg, "--batch", "--armor", "--export", "served"],
        env=env, capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    root = _node(tmp_path)
    (tmp_path / "bin/gpg").unlink()  # the real one
    served = tmp_path / "served.asc"
    served.write_text(armored)
    (tmp_path / "bin/curl").write_text(
        '#!/bin/bash\nwhile [ $# -gt 0 ]; do [ "$1" = --output ] && out=$2; shift; done\n'
        f'cp {served} "$out"\n'
    )
    for fingerprint, ok in ((fingerprints[0], True), (fingerprints[1], False)):
        keyring = root / "usr/share/keyrings/nvidia-container-toolkit-keyring.gpg"
        keyring.unlink(missing_ok=True)
        (root / "dpkg.json").write_text("{}")
        pins = nd.NvidiaDriverPins(key_fingerprint=fingerprint)
        result = _run(tmp_path, nd.render_install_script(pins), {"HOME": str(tmp_path)})
        assert (result.returncode == 0) is ok, result.stderr
        assert keyring.exists() is ok
        if ok:  # a binary keyring apt reads with signed-by (gpg --dearmor)
            assert keyring.read_bytes()[:1] != b"-"
        else:
            assert f"has key {fingerprints[0]}, not the pinned {fingerprints[1]}" in result.stderr
