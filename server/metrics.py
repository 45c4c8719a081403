"""Prometheus metrics of the server (its own registry, so tests can build many servers)."""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    start_http_server,
)

# The `_created` timestamp series of every counter and histogram are noise to a scraper.
disable_created_metrics()

LATENCY_BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    """Requests by method and status, latency, tokens processed, readiness, bearer tokens."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "rnnserve_requests",
            "gRPC requests by method and status code",
            ["method", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "rnnserve_request_seconds",
            "gRPC request latency by method",
            ["method"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.tokens = Counter(
            "rnnserve_tokens",
            "tokens run through the model",
            ["model", "version"],
            registry=self.registry,
        )
        self.batch_rows = Histogram(
            "rnnserve_batch_rows",
            "rows per onnxruntime call from the batcher",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=self.registry,
        )
        self.batch_requests = Histogram(
            "rnnserve_batch_requests",
            "requests per onnxruntime call from the batcher",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=self.registry,
        )
        self.live_sequences = Gauge(
            "rnnserve_live_sequences", "v2 sequences holding state", registry=self.registry
        )
        self.open_streams = Gauge(
            "rnnserve_open_streams",
            "open ParseStream/ModelStreamInfer streams",
            registry=self.registry,
        )
        self.ready = Gauge(
            "rnnserve_ready", "1 when the model is loaded and warm", registry=self.registry
        )
        self.model_ready = Gauge(
            "rnnserve_model_ready",
            "1 while a model version takes requests, 0 once retired or failed",
            ["model", "version"],
            registry=self.registry,
        )
        self.auth_tokens = Gauge(
            "rnnserve_auth_tokens",
            "bearer tokens loaded from the token file (0 with a token file: every guarded call "
            "is denied)",
            registry=self.registry,
        )

    def record_batch(self, rows: int, requests: int) -> None:
        """One batch ran."""
        self.batch_rows.observe(rows)
        self.batch_requests.observe(requests)

    def serve(self, host: str, port: int) -> int:
        """Start the /metrics HTTP endpoint; returns the bound port."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        return int(server.server_port)
