"""Prometheus metrics (off by default; when on, served on loopback unless configured otherwise).

A private registry keeps the endpoint to the daemon's own figures (no process collectors from other
libraries), so the scrape is small and stable.
"""

from __future__ import annotations

from loguru import logger
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, start_http_server

from edge_dac.errors import ConfigError


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.latency = Histogram(
            "edge_dac_window_latency_seconds",
            "Window end (audio clock, or when the window was complete if earlier: --fast) to caption published",
            registry=r,
            buckets=(0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0),
        )
        self.windows = Counter("edge_dac_windows_total", "Windows by outcome", ["outcome"], registry=r)
        for outcome in ("captioned", "dropped", "silent", "failed"):
            self.windows.labels(outcome)  # export zeros from the start
        self.overflows = Counter("edge_dac_input_overflows_total", "Capture overflows from the device", registry=r)
        self.queue_depth = Gauge("edge_dac_queue_depth", "Windows waiting for the engine", registry=r)
        self.real_time_factor = Gauge("edge_dac_real_time_factor", "Engine time / audio time", registry=r)
        self.clock_drift = Gauge(
            "edge_dac_clock_drift_ppm", "Audio device's measured rate error against the wall clock (ppm)", registry=r
        )
        self.source_healthy = Gauge("edge_dac_source_healthy", "1 when the audio source delivers audio", registry=r)
        self.engine = Info("edge_dac_engine", "Caption engine in use", registry=r)
        self._server = None

    def serve(self, address: str, port: int) -> None:
        try:
            self._server, _ = start_http_server(port, addr=address, registry=self.registry)
        except OSError as error:
            raise ConfigError(f"metrics {address}:{port}: cannot listen ({error.strerror}); set metrics.port") from None
        logger.info(f"metrics on http://{address}:{port}/metrics")

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None
