"""Building and running the images with Debian's podman, without a Docker engine or a registry.

The base image is made locally: mmdebstrap writes a Debian bookworm root filesystem with
python3 (3.11) and its venv module, `podman import` turns it into an image, and the
Dockerfile receives it as BASE_IMAGE. The tarball is cached in .tools/images. Builds run with
`--isolation chroot`; containers with runc, the cgroupfs manager and explicit ulimits, which is
what works on these machines.
"""

from __future__ import annotations

import hashlib
import os
import resource
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".tools" / "images"
RUNC = "/usr/sbin/runc"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
MMDEBSTRAP = [
    "mmdebstrap",
    "--variant=minbase",
    "--include=python3,python3-venv,ca-certificates,tzdata",
    "--dpkgopt=path-exclude=/usr/share/doc/*",
    "--dpkgopt=path-exclude=/usr/share/man/*",
    "--dpkgopt=path-exclude=/usr/share/locale/*",
    '--aptopt=Acquire::Retries "3"',
    "bookworm",
]


def _ulimit(name: str, kind: int, want: int) -> str:
    """An explicit limit (the runtime's defaults fail here), never above this process's own."""
    hard = resource.getrlimit(kind)[1]
    value = want if hard == resource.RLIM_INFINITY else min(want, hard)
    return f"--ulimit={name}={value}:{value}"


RUN_FLAGS = [
    f"--runtime={RUNC}",
    "--cgroup-manager=cgroupfs",
    _ulimit("nofile", resource.RLIMIT_NOFILE, 16384),
    _ulimit("nproc", resource.RLIMIT_NPROC, 16384),
    "--network=host",
    "--read-only",
    "--cap-drop=ALL",
    "--security-opt=no-new-privileges",
    "--user=10001:10001",
]


def require_tools() -> None:
    """Skip locally, fail in CI, when podman, buildah's chroot builds or mmdebstrap are missing."""
    missing = [t for t in ("podman", "mmdebstrap") if not shutil.which(t)]
    if not os.path.exists(RUNC):
        missing.append(RUNC)
    if os.geteuid() != 0:
        missing.append("root (podman storage and mmdebstrap as used here)")
    if not missing:
        return
    message = f"image tools missing: {', '.join(missing)} (scripts/install-tools)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def podman(
    *args: str, timeout: float = 120, check: bool = True
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["podman", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def base_image() -> str:
    """The local Debian + python3 base image, built once and cached as a tarball."""
    key = hashlib.sha256(" ".join(MMDEBSTRAP).encode()).hexdigest()[:12]
    name = f"localhost/conversation-events-base:bookworm-py311-{key}"
    if podman("image", "exists", name, check=False).returncode == 0:
        return name
    tarball = CACHE / f"base-bookworm-py311-{key}.tar"
    if not tarball.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        partial = tarball.with_suffix(".partial.tar")
        subprocess.run([*MMDEBSTRAP, str(partial)], check=True, capture_output=True, timeout=900)
        partial.rename(tarball)
    podman("import", "--quiet", str(tarball), name, timeout=300)
    return name


def build(base: str) -> str:
    """Build the repository's one Dockerfile; returns the image name (one per checkout, so two
    checkouts on one machine do not overwrite each other's image)."""
    checkout = hashlib.sha256(str(ROOT).encode()).hexdigest()[:8]
    name = f"localhost/conversation-events:smoke-{checkout}"
    args = [
        "build",
        "--isolation=chroot",
        "--network=host",
        f"--build-arg=BASE_IMAGE={base}",
        f"--file={ROOT / 'Dockerfile'}",
        f"--tag={name}",
    ]
    if HOST_CA_BUNDLE.exists():
        # This machine reaches PyPI through a TLS-intercepting proxy that only the host trusts.
        args.append(f"--secret=id=ca-certificates,src={HOST_CA_BUNDLE}")
    podman(*args, str(ROOT), timeout=900)
    return name


def run_detached(name: str, image: str, env: dict[str, str], *command: str) -> None:
    """Start `command` (a console script of the image) in a detached container."""
    env_args = [f"--env={k}={v}" for k, v in env.items()]
    podman("run", "--detach", f"--name={name}", *RUN_FLAGS, *env_args, image, *command)


def run_once(image: str, env: dict[str, str], *command: str, timeout: float = 180) -> str:
    """Run a command to completion in a fresh container; returns its output."""
    env_args = [f"--env={k}={v}" for k, v in env.items()]
    result = podman("run", "--rm", *RUN_FLAGS, *env_args, image, *command, timeout=timeout)
    return result.stdout + result.stderr


def logs(name: str) -> str:
    result = podman("logs", "--tail=60", name, check=False)
    return f"--- {name} ---\n{result.stdout}{result.stderr}"
