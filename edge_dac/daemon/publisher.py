"""ZeroMQ PUB socket that publishes ``[topic, json]`` and never blocks the pipeline.

Past the high-water mark a PUB socket drops messages for that subscriber instead of waiting, so
a slow or stuck subscriber can never stall capture; the per-topic sequence numbers let it see
what it missed. Binding is guarded: the endpoint is checked first (``config.endpoint_problem``:
ZeroMQ binds tcp port 99999 as 34463 without a word), tcp refuses a busy port by itself, but a
second process binding the same ``ipc://`` path silently steals it, so ipc endpoints take a lock
file (``captions.sock.lock``) and probe the socket before binding; a clean close removes both files.
The socket's folder must exist, unless it is inside the runtime dir, where it is created. With
CURVE configured, only clients whose public key is in the authorised folder complete the
handshake (checked by pyzmq's ZAP authenticator thread).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import zmq
import zmq.auth
from loguru import logger
from zmq.auth.thread import ThreadAuthenticator

from edge_dac.daemon.config import endpoint_problem, runtime_dir
from edge_dac.daemon.messages import SCHEMA_VERSION, encode, topic
from edge_dac.errors import ConfigError, EdgeDacError


def utc_now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def ipc_path(endpoint: str) -> Path | None:
    return Path(endpoint[len("ipc://") :]) if endpoint.startswith("ipc://") else None


def _ipc_in_use(path: Path) -> bool:
    """Whether something accepts connections on this Unix socket path (a stale file does not)."""
    if not path.exists():
        return False
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        probe.close()


def lock_path(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


def _ipc_folder(path: Path) -> None:
    """The socket's folder must exist; only a folder inside the runtime dir is created (where the
    default endpoint lives), so a typo elsewhere is an error instead of a new tree of folders."""
    folder, runtime = path.parent, runtime_dir()
    if folder.is_dir():
        return
    if folder.exists():
        raise ConfigError(f"{folder}: not a folder, so ipc://{path} cannot be created there; choose another --endpoint")
    if folder == runtime or folder.is_relative_to(runtime):
        folder.mkdir(parents=True, exist_ok=True)
        return
    raise ConfigError(
        f"{folder}: folder of ipc://{path} does not exist; create it or choose another --endpoint "
        f"(only folders inside the runtime dir {runtime} are created)"
    )


def _lock_ipc(path: Path) -> int:
    """Hold an exclusive lock beside the socket for the life of the process (released if it dies)."""
    _ipc_folder(path)
    lock = lock_path(path)
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise EdgeDacError(
                f"{path}: another edge-dac daemon already publishes here; stop it or choose another --endpoint"
            ) from None
        try:  # a daemon that stopped removes the lock file: ours must be the one still at that path
            if os.stat(lock).st_ino == os.fstat(fd).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    if _ipc_in_use(path):
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
        raise EdgeDacError(f"{path}: another program is bound to this socket; choose another --endpoint")
    return fd


class Publisher:
    """Thread-safe publisher: the worker, the event tracker and the heartbeat share one socket."""

    def __init__(
        self,
        endpoint: str,
        device: str,
        *,
        hwm: int = 1000,
        ipc_mode: int = 0o666,
        curve_secret_key: str | Path | None = None,
        curve_authorized_keys: str | Path | None = None,
    ):
        problem = endpoint_problem(endpoint)
        if problem:
            raise ConfigError(f"{endpoint}: {problem}")
        self.endpoint = endpoint
        self.device = device
        self._lock = threading.Lock()
        self._seq: dict[str, int] = {}
        self._settings = {
            "hwm": hwm, "ipc_mode": ipc_mode, "curve_secret_key": curve_secret_key,
            "curve_authorized_keys": curve_authorized_keys,
        }
        self.refused = 0  # messages not sent because they were not valid JSON (see publish)
        self._lock_fd: int | None = None
        self._auth: ThreadAuthenticator | None = None
        self._authorized: Path | None = None
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.PUB)
        self.socket.setsockopt(zmq.SNDHWM, hwm)
        self.socket.setsockopt(zmq.LINGER, 500)  # flush the offline status on close, but never hang
        try:
            if curve_secret_key is not None:
                self._enable_curve(Path(curve_secret_key), Path(curve_authorized_keys or ""))
            path = ipc_path(endpoint)
            if path is not None:
                self._lock_fd = _lock_ipc(path)
            self._bind()
            if path is not None:  # connecting needs write access; the service's umask would deny it
                os.chmod(path, ipc_mode)
        except BaseException:
            self.close()
            raise

    def _enable_curve(self, secret_key: Path, authorized: Path) -> None:
        if not secret_key.is_file():
            raise ConfigError(f"{secret_key}: CURVE secret key not found; create one with 'edge-dac keys'")
        if not authorized.is_dir():
            raise ConfigError(f"{authorized}: folder of authorised client keys not found; create it")
        try:
            public, secret = zmq.auth.load_certificate(secret_key)
        except (ValueError, OSError) as error:
            raise ConfigError(f"{secret_key}: not a CURVE key file from 'edge-dac keys' ({error})") from None
        if secret is None:
            raise ConfigError(f"{secret_key}: holds only a public key; pass the .key_secret file")
        self._auth = ThreadAuthenticator(self.context)
        self._auth.start()
        self._authorized = authorized
        # Every connection goes through ZAP; only public keys found in this folder get in.
        self._auth.configure_curve(domain="*", location=str(authorized))
        self.socket.curve_secretkey = secret
        self.socket.curve_publickey = public
        self.socket.curve_server = True
        keys = len(list(authorized.glob("*.key")))
        logger.info(f"CURVE on: {keys} authorised client key(s) in {authorized}")

    def reload_authorized_keys(self) -> None:
        """Re-read the folder of authorised keys (SIGHUP). New connections are checked against it;
        a subscriber already connected stays until it reconnects, so revoking a key needs a restart."""
        if self._auth is not None and self._authorized is not None:
            self._auth.configure_curve(domain="*", location=str(self._authorized))
            logger.info(f"CURVE: {len(list(self._authorized.glob('*.key')))} authorised client key(s) now")

    def _bind(self) -> None:
        try:
            self.socket.bind(self.endpoint)
        except zmq.ZMQError as error:
            if error.errno == errno.EADDRINUSE:
                raise EdgeDacError(
                    f"{self.endpoint}: address already in use (another daemon?); stop it or choose another --endpoint"
                ) from None
            raise EdgeDacError(f"{self.endpoint}: cannot bind ({error.strerror}); check the endpoint") from None

    def publish(self, message_type: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """Send one message without blocking; returns the full message (envelope + body).

        A message that is not strict JSON (a NaN or infinite number) is never sent: it is logged,
        counted in ``refused`` and None is returned. Its sequence number is used up, so subscribers
        see the gap, as for any other lost message.
        """
        name = topic(message_type, self.device)
        with self._lock:
            seq = self._seq.get(name, 0)
            self._seq[name] = seq + 1
            message = {
                "schema_version": SCHEMA_VERSION,
                "type": message_type,
                "seq": seq,
                "device": self.device,
                "sent_at": utc_now_iso(),
                **body,
            }
            try:
                payload = encode(message)
            except ValueError as error:  # NaN/Infinity: subscribers' JSON parsers would reject the message
                self.refused += 1
                logger.error(f"not publishing a {message_type} message that is not valid JSON ({error})")
                return None
            frames = [name.encode(), payload]
            # PUB drops by itself past the HWM; NOBLOCK makes sure it can never wait instead.
            with contextlib.suppress(zmq.Again):
                self.socket.send_multipart(frames, flags=zmq.NOBLOCK)
        return message

    def reconfigure(
        self,
        endpoint: str,
        *,
        hwm: int = 1000,
        ipc_mode: int = 0o666,
        curve_secret_key: str | Path | None = None,
        curve_authorized_keys: str | Path | None = None,
    ) -> bool:
        """Apply new settings (SIGHUP), keeping every topic's sequence numbers, so a subscriber sees
        a reload as a short gap at most, never as a restart (docs/subscribing.md). True if a new
        socket was needed: another endpoint, high-water mark or CURVE key (subscribers reconnect by
        themselves). ``ipc_mode`` alone is applied to the socket file in place.

        A new endpoint is bound before the old one is let go, so one that is refused (an
        ``EdgeDacError``) leaves everything as it was. The same endpoint is bound again in place
        (publishing waits meanwhile); if the new settings fail there, the old ones are restored.
        """
        settings = {
            "hwm": hwm, "ipc_mode": ipc_mode, "curve_secret_key": curve_secret_key,
            "curve_authorized_keys": curve_authorized_keys,
        }
        with self._lock:
            if endpoint == self.endpoint and {**settings, "ipc_mode": None} == {**self._settings, "ipc_mode": None}:
                path = ipc_path(endpoint)
                if path is not None and ipc_mode != self._settings["ipc_mode"]:
                    os.chmod(path, ipc_mode)
                self._settings = settings
                return False
            if endpoint != self.endpoint:
                fresh = Publisher(endpoint, self.device, **settings)
                self._release()
            else:
                self._release()
                try:
                    fresh = Publisher(endpoint, self.device, **settings)
                except BaseException:
                    self._adopt(Publisher(self.endpoint, self.device, **self._settings))
                    raise
            self._adopt(fresh)
            self._settings = settings
            return True

    def rename(self, device: str) -> None:
        """A new device id (SIGHUP): its topics count from 0, the other topics' numbers stay."""
        with self._lock:
            self.device = device

    def _adopt(self, other: Publisher) -> None:
        """Take ``other``'s socket and resources; this publisher's sequence numbers stay."""
        self.endpoint, self.context, self.socket = other.endpoint, other.context, other.socket
        self._auth, self._authorized, self._lock_fd = other._auth, other._authorized, other._lock_fd
        other._auth, other._lock_fd, other.socket = None, None, None

    def close(self) -> None:
        self._release()

    def _release(self) -> None:
        if self.socket is not None and not self.socket.closed:
            self.socket.close()
        if self._auth is not None:
            self._auth.stop()
            self._auth = None
        self.context.term()
        if self._lock_fd is not None:  # a clean exit leaves neither the socket nor its lock file behind
            path = ipc_path(self.endpoint)
            if path is not None:
                path.unlink(missing_ok=True)
                lock_path(path).unlink(missing_ok=True)  # still locked: nobody else can hold it meanwhile
            os.close(self._lock_fd)
            self._lock_fd = None

