"""What ``rtclient serve`` keeps across restarts: its token secret and admin token.

One JSON file per user, readable by that user only (0600, in a 0700 directory):
``$XDG_STATE_HOME/rtclient/serve.json``, by default ``~/.local/state/rtclient/serve.json``
(``RTCLIENT_STATE_FILE`` names another file). A restarted server signs with the same
secret, so the tokens it issued stay valid and connected clients come back; ``rtclient
chat --user U`` reads the same file to sign tokens for a local server.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ENV_STATE_FILE", "ServeState", "StateFileError", "load_state", "state_path"]

ENV_STATE_FILE = "RTCLIENT_STATE_FILE"


class StateFileError(Exception):
    """The state file cannot be read, parsed or written; the text says which file."""


@dataclass(frozen=True, slots=True)
class ServeState:
    secret: str
    admin_token: str

    def __repr__(self) -> str:
        return "ServeState(…)"  # credentials are never printed


def state_path(env: Mapping[str, str] | None = None) -> Path:
    """Where the state file lives for this user (see the module's docstring)."""
    env = os.environ if env is None else env
    if env.get(ENV_STATE_FILE):
        return Path(env[ENV_STATE_FILE])
    base = env.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "rtclient" / "serve.json"


def load_state(path: Path, *, create: bool) -> ServeState | None:
    """The state in ``path``; with ``create``, a new random one is written first if
    there is none (else None). Permissions wider than 0600 are narrowed."""
    try:
        with open(path, encoding="utf-8") as f:
            info = os.fstat(f.fileno())
            if hasattr(os, "getuid") and info.st_uid != os.getuid():
                raise StateFileError(
                    f"{path} belongs to another user (uid {info.st_uid}); "
                    "remove it, or pass --ephemeral"
                )
            mode = info.st_mode
            data = json.load(f)
        if stat.S_IMODE(mode) & 0o077:
            os.chmod(path, 0o600)
        secret, admin = data["secret"], data["adminToken"]
        if not (isinstance(secret, str) and secret and isinstance(admin, str) and admin):
            raise TypeError("secret and adminToken must be non-empty strings")
        return ServeState(secret, admin)
    except FileNotFoundError:
        if not create:
            return None
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise StateFileError(
            f"cannot use {path}: {type(exc).__name__}; remove it, or pass --ephemeral"
        ) from None
    state = ServeState(secrets.token_urlsafe(32), secrets.token_urlsafe(16))
    try:
        _create(path, {"secret": state.secret, "adminToken": state.admin_token})
    except FileExistsError:  # another serve wrote it meanwhile: use theirs
        return load_state(path, create=False)
    except OSError as exc:
        raise StateFileError(f"cannot write {path}: {exc.strerror}; or pass --ephemeral") from None
    return state


def _create(path: Path, data: dict[str, str]) -> None:
    """Write ``data`` to ``path`` (0600), which must not exist; FileExistsError if it
    does. Written in full to a temporary file first and then linked into place, so no
    one ever reads it half written."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=".serve-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:  # mkstemp: 0600
            json.dump(data, f)
            f.flush()
            os.fsync(f.fileno())
        os.link(temporary, path)  # atomic, and never over an existing file
    finally:
        os.unlink(temporary)
