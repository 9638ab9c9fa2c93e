"""Finding (and, in CI, installing) the real programs that cluster and interop tests run.

A test that needs ``redis-server``, ``haproxy`` or ``nats-server`` calls
:func:`require_program`.  On a developer machine a missing program is a clear
:class:`ProgramMissing` (the fixtures turn it into a skip that names the package); under
``CI=true`` running as root, the program is installed from Debian's packages first, and if
that fails the test fails: a test required in CI never skips.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

__all__ = ["DEBIAN_PACKAGES", "ProgramMissing", "free_port", "in_ci", "require_program"]

DEBIAN_PACKAGES = {
    "redis-server": "redis-server",
    "redis-cli": "redis-tools",
    "haproxy": "haproxy",
    "nats-server": "nats-server",
}
"""The Debian package that provides each program."""

APT_TIMEOUT = 600.0


class ProgramMissing(RuntimeError):
    """A program a test needs is not installed (and could not be installed)."""


def in_ci() -> bool:
    """True under ``CI=true`` (or ``CI=1``): missing prerequisites are failures there."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1")


def _which(name: str) -> str | None:
    found = shutil.which(name)
    if found is None:
        # Debian puts haproxy in /usr/sbin, which a non-root PATH may lack.
        for folder in ("/usr/sbin", "/sbin", "/usr/local/sbin"):
            candidate = Path(folder) / name
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
    return found


def _apt_install(package: str) -> str | None:
    """Install ``package`` with apt-get; return why it failed, or None."""
    apt = shutil.which("apt-get")
    if apt is None:
        return "apt-get not found"
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        return "not root, cannot apt-get install"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    # Several test processes may ask at once: one apt-get at a time.
    with open(Path(tempfile.gettempdir()) / "rtclient-apt.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for argv in ([apt, "install", "-y", "-q", package], [apt, "update", "-q"]):
            done = subprocess.run(
                argv, capture_output=True, text=True, env=env, timeout=APT_TIMEOUT, check=False
            )
            if done.returncode == 0 and argv[1] == "install":
                return None
        done = subprocess.run(
            [apt, "install", "-y", "-q", package],
            capture_output=True,
            text=True,
            env=env,
            timeout=APT_TIMEOUT,
            check=False,
        )
        if done.returncode == 0:
            return None
        return (done.stderr or done.stdout).strip()[-500:] or f"exit {done.returncode}"


def require_program(name: str, *, install: bool | None = None) -> str:
    """Return the path of ``name``; install its Debian package first where allowed.

    ``install`` defaults to :func:`in_ci`.  Raises :class:`ProgramMissing` naming the
    package when the program is not there.
    """
    found = _which(name)
    if found is not None:
        return found
    package = DEBIAN_PACKAGES.get(name, name)
    why = f"{name} not found on PATH (Debian package {package!r}: apt-get install {package})"
    if install if install is not None else in_ci():
        failure = _apt_install(package)
        found = _which(name)
        if found is not None:
            return found
        why += f"; installing it failed: {failure}"
    raise ProgramMissing(why)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now (the OS's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port
