"""The daemon's config (``configs/daemon.yaml``): source, windows, engine, queue, events, output.

Every section rejects unknown keys, so a typo fails at start-up with the key named instead of
being silently ignored. Command-line flags override individual values after loading.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Literal

from loguru import logger
from pydantic import Field, field_validator, model_validator

from edge_dac.config import StrictModel, load_config, validate_config


def runtime_dir() -> Path:
    """Where the ipc socket lives: systemd's RuntimeDirectory, else the user's runtime dir."""
    if os.environ.get("RUNTIME_DIRECTORY"):  # set by systemd from RuntimeDirectory=
        return Path(os.environ["RUNTIME_DIRECTORY"].split(":")[0])
    if os.environ.get("XDG_RUNTIME_DIR"):
        return Path(os.environ["XDG_RUNTIME_DIR"]) / "edge-dac"
    return Path(f"/tmp/edge-dac-{os.getuid()}")


def default_endpoint() -> str:
    return f"ipc://{runtime_dir() / 'captions.sock'}"


UNIX_PATH_MAX = 107  # bytes of a Unix socket path (sun_path is 108 with the terminating NUL)


def endpoint_problem(endpoint: str) -> str | None:
    """Why the daemon cannot publish on ``endpoint`` (one line, without the endpoint), or None.

    ZeroMQ itself is lenient where a daemon must not be: ``tcp://HOST:99999`` binds port 34463
    (99999 modulo 65536), ``:0``, ``:*`` and ``:-1`` bind a port of its choosing, and a relative ipc
    path depends on the working directory. Subscribers need to know the address, so all are refused.
    """
    scheme, separator, address = endpoint.partition("://")
    if not separator or scheme not in ("ipc", "tcp"):
        return "expected ipc:///ABSOLUTE/PATH or tcp://HOST:PORT"
    if scheme == "tcp":
        host, colon, port = address.rpartition(":")
        if not colon or not host:
            return "no port: expected tcp://HOST:PORT, e.g. tcp://127.0.0.1:5556"
        if not (port.isascii() and port.isdigit()) or not 1 <= int(port) <= 65535:
            return (f"port {port!r} is not a number from 1 to 65535 (ZeroMQ would bind some other port); "
                    "choose a port in that range")
        return None
    if address.startswith("@"):
        return "abstract ipc sockets (ipc://@NAME) have no file permissions; use an ipc path"
    if not address.startswith("/"):
        return "the ipc path must be absolute, e.g. ipc:///run/edge-dac/captions.sock"
    if len(os.fsencode(address)) > UNIX_PATH_MAX:
        return f"the ipc path is longer than the {UNIX_PATH_MAX} bytes a Unix socket path may hold; use a shorter one"
    return None


class RetryConfig(StrictModel):
    """Reopening a lost or absent microphone: exponential backoff, never a retry storm."""

    initial_s: float = Field(0.5, gt=0)
    max_s: float = Field(30.0, gt=0)
    failed_after_s: float = Field(
        60.0, gt=0, description="waiting for (at start-up) or recovering a microphone longer than this is reported "
        "as failed; retries go on in the background",
    )


class SourceConfig(StrictModel):
    kind: Literal["demo", "file", "mic"] = "demo"
    path: str | None = Field(None, description="file: the audio file; demo: a folder of clips (default: bundled)")
    loop: bool = Field(False, description="file: start again at the end (demo always loops)")
    fast: bool = Field(False, description="file/demo: read as fast as the engine keeps up, not at real time")
    pace_hz: float | None = Field(
        None, gt=0, description="file/demo at real time: samples handed out per wall-clock second (default: the "
        "sample rate); a value a little off imitates a device whose clock is off, e.g. 16008 for 500 ppm fast",
    )
    device: str | int | None = Field(
        None, description="mic: index, name substring, 'card:ID' (ALSA card id) or 'usb:VID:PID[:SERIAL]'"
    )
    capture_rate: int | None = Field(None, gt=0, description="mic: rate to open the device at (default: its own)")
    block_s: float = Field(0.1, gt=0, le=1.0)
    ring_s: float = Field(30.0, gt=0, description="mic: capture buffer; older audio is overwritten and counted")
    stall_s: float = Field(2.5, gt=0, description="mic: no frames for this long means the device is lost")
    retry: RetryConfig = RetryConfig()

    @model_validator(mode="after")
    def _file_needs_path(self) -> SourceConfig:
        if self.kind == "file" and not self.path:
            raise ValueError("source kind 'file' needs 'path' (e.g. --source file:recording.flac)")
        return self


class WindowConfig(StrictModel):
    length_s: float | None = Field(
        None, gt=0, description="seconds; null: the model's own window (a longer one is refused)"
    )
    hop_s: float = Field(
        2.0, gt=0, description="a window every hop_s; longer than the window leaves audio uncaptioned "
        "(allowed for a duty cycle, with a warning at start-up and reload)",
    )
    silence_dbfs: float | None = Field(-60.0, description="windows quieter than this are skipped; null: caption all")


class EngineConfig(StrictModel):
    model: str | None = Field(None, description="checkpoint or model id for the engine (default: shipped model)")
    backend: str = "auto"
    precision: str | None = Field(
        None, description="the engine's precision (edge-dac export --precision); null: the backend's fp32"
    )
    # The one decoding default (edge_dac.model.decoding.DecodingOptions), as `caption` and `eval` use;
    # written out, not imported: that module imports torch, which `listen` and the config must not
    # load (tests/test_defaults.py holds the numbers together, tests/test_layering.py the imports).
    steps: int = Field(2, ge=1)
    candidates: int = Field(5, ge=1)
    event_guidance: float = Field(2.0, ge=0, description="how hard the event head steers the words; 0: off")
    threads: int | None = Field(None, ge=1)


class WorkerConfig(StrictModel):
    queue_size: int = Field(4, ge=1, description="pending windows; when full the oldest is dropped")
    max_batch: int = Field(4, ge=1)


class EventConfig(StrictModel):
    end_after: int = Field(1, ge=1, description="windows that disagree (or are silent) before an event ends")

    @model_validator(mode="before")
    @classmethod
    def _drop_similarity(cls, data: object) -> object:
        # Configs written before it was removed may still hold events.similarity: it never had an effect.
        if isinstance(data, dict) and "similarity" in data:
            logger.warning("events.similarity is no longer a setting (it never had an effect); remove it")
            data = {key: value for key, value in data.items() if key != "similarity"}
        return data


class CurveConfig(StrictModel):
    secret_key: str = Field(description="the daemon's key_secret file from 'edge-dac keys'")
    authorized_keys: str = Field(description="folder of client public .key files allowed to subscribe")


class PublisherConfig(StrictModel):
    endpoint: str = Field(default_factory=default_endpoint)
    device_id: str = Field(default_factory=socket.gethostname, pattern=r"^[A-Za-z0-9_.:-]+$")
    hwm: int = Field(1000, ge=1, description="messages queued per subscriber before dropping")
    heartbeat_s: float = Field(1.0, gt=0)
    ipc_mode: str = Field(
        "0666", pattern=r"^0?[0-7]{3}$", description="ipc socket permissions; 0666 lets every local user subscribe"
    )
    curve: CurveConfig | None = None

    @field_validator("endpoint")
    @classmethod
    def _valid_endpoint(cls, endpoint: str) -> str:
        problem = endpoint_problem(endpoint)
        if problem:
            raise ValueError(problem)
        return endpoint


class MetricsConfig(StrictModel):
    enabled: bool = False
    address: str = "127.0.0.1"
    port: int = Field(9721, ge=1, le=65535)


class DaemonConfig(StrictModel):
    source: SourceConfig = SourceConfig()
    windows: WindowConfig = WindowConfig()
    engine: EngineConfig = EngineConfig()
    worker: WorkerConfig = WorkerConfig()
    events: EventConfig = EventConfig()
    publisher: PublisherConfig = Field(default_factory=PublisherConfig)
    metrics: MetricsConfig = MetricsConfig()


def load_daemon_config(path: str | Path | None) -> DaemonConfig:
    """The config at ``path``, or the defaults when no file is given."""
    return load_config(path, DaemonConfig) if path else validate_config({}, DaemonConfig, "<defaults>")


def parse_source(spec: str) -> dict:
    """``demo`` | ``file:PATH`` | ``mic`` | ``mic:NAME`` (command-line form) -> source config fields."""
    kind, _, rest = spec.partition(":")
    if kind == "demo":
        return {"kind": "demo", "path": rest or None}
    if kind == "file" and rest:
        return {"kind": "file", "path": rest}
    if kind == "mic":
        return {"kind": "mic", "device": (int(rest) if rest.isdigit() else rest) or None}
    from edge_dac.errors import ConfigError

    raise ConfigError(f"--source {spec!r}: expected demo, file:PATH, mic or mic:NAME")
