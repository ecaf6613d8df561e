"""``edge-dac keys``: CURVE key pairs for the daemon and its subscribers.

Each pair is two files: ``NAME.key`` (public, safe to copy anywhere) and ``NAME.key_secret``
(keep private). The daemon is given its own ``.key_secret`` and a folder holding the ``.key``
files of the clients it lets in; each client is given its ``.key_secret`` and the daemon's
``.key``.
"""

from __future__ import annotations

import os
from pathlib import Path

import zmq.auth

from edge_dac.errors import EdgeDacError


def create_key_pair(directory: str | Path, name: str, *, force: bool = False) -> tuple[Path, Path]:
    """Write ``NAME.key`` and ``NAME.key_secret`` (mode 600) in ``directory``; return their paths."""
    directory = Path(directory)
    if not name or "/" in name or name.startswith("."):
        raise EdgeDacError(f"key name {name!r}: use a plain name such as 'server' or 'kitchen-display'")
    public, secret = directory / f"{name}.key", directory / f"{name}.key_secret"
    if not force and (public.exists() or secret.exists()):
        raise EdgeDacError(f"{public}: a key pair with this name exists; pick another name or pass --force")
    directory.mkdir(parents=True, exist_ok=True)
    public_path, secret_path = zmq.auth.create_certificates(directory, name)
    os.chmod(secret_path, 0o600)
    return Path(public_path), Path(secret_path)
