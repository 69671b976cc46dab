"""The installation's master key file: 32 random bytes as hex text, mode 0600.

It never lives in the database. By default it lies beside the SQLite file
(``<db>.key``); it may be any path, or the secret may be passed as bytes. Created
atomically: written and synced under a temporary name, then hard-linked into place, so a
racing reader sees no file or the whole key.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from pathlib import Path

from minlog.errors import ConfigurationError

__all__ = ["load_or_create_key"]


def load_or_create_key(path: str | os.PathLike[str], *, create: bool = True) -> bytes:
    """Read the 32-byte secret (hex text) at ``path``; create it (mode 0600) when missing."""
    p = Path(path)
    try:
        text = p.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        if not create:
            raise ConfigurationError(f"the key file {p} does not exist") from None
        return _create_key(p)
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigurationError(f"cannot read the key file {p}: {e}") from e
    try:
        secret = bytes.fromhex(text)
    except ValueError:
        secret = b""
    if len(secret) != 32:
        raise ConfigurationError(f"the key file {p} must hold 64 hexadecimal digits")
    return secret


def _create_key(p: Path) -> bytes:
    """Publish a new key file atomically: written and synced under a temporary name, then
    hard-linked into place, so a racing reader sees either no file or the whole key."""
    secret = secrets.token_bytes(32)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    except OSError as e:
        raise ConfigurationError(f"cannot create the key file {p}: {e}") from e
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(secret.hex() + "\n")
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, p)
        except FileExistsError:  # another process published first: use theirs
            return load_or_create_key(p, create=False)
        except OSError as e:
            raise ConfigurationError(f"cannot create the key file {p}: {e}") from e
        _fsync_dir(p.parent)
        return secret
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _fsync_dir(d: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
