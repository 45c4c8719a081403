"""Prometheus metrics of the server (its own registry, so tests can build many servers).

With worker processes each worker records into PROMETHEUS_MULTIPROC_DIR (set by the parent
before any worker starts) and the parent serves the sum over workers (`serve_workers`); each
gauge says how its workers' values combine.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

from server.ports import bare_host

# The `_created` timestamp series of every counter and histogram are noise to a scraper.
disable_created_metrics()

LATENCY_BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    """Requests by method and status, latency, tokens processed, readiness, bearer tokens."""

    def __init__(self, auth_tokens: bool = True) -> None:
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
            "rnnserve_live_sequences",
            "v2 sequences holding state",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.open_streams = Gauge(
            "rnnserve_open_streams",
            "open ParseStream/ModelStreamInfer streams",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.ready = Gauge(  # with workers: 1 only while every live worker is ready
            "rnnserve_ready",
            "1 when the model is loaded and warm",
            registry=self.registry,
            multiprocess_mode="livemin",
        )
        self.model_ready = Gauge(
            "rnnserve_model_ready",
            "1 while a model version takes requests, 0 once retired or failed",
            ["model", "version"],
            registry=self.registry,
            multiprocess_mode="livemin",
        )
        # Only with a token file (`auth_tokens`): 0 then means every guarded call is denied, an
        # alert; a server without tokens has no such series to fire on.
        self.auth_tokens = (
            Gauge(
                "rnnserve_auth_tokens",
                "bearer tokens loaded from the token file (0: every guarded call is denied)",
                registry=self.registry,
                multiprocess_mode="livemin",
            )
            if auth_tokens
            else None
        )

    def record_batch(self, rows: int, requests: int) -> None:
        """One batch ran."""
        self.batch_rows.observe(rows)
        self.batch_requests.observe(requests)

    def serve(self, host: str, port: int) -> int:
        """Start the /metrics HTTP endpoint; returns the bound port."""
        server, _thread = start_http_server(port, addr=bare_host(host), registry=self.registry)
        return int(server.server_port)


class _Restarts(Collector):
    """rnnserve_worker_restarts_total, read from the supervisor when scraped."""

    def __init__(self, count: Callable[[], int]) -> None:
        self.count = count

    def collect(self) -> Iterator[Metric]:
        """One counter sample."""
        family = CounterMetricFamily(
            "rnnserve_worker_restarts", "worker processes restarted after they died"
        )
        family.add_metric([], self.count())
        yield family


def serve_workers(host: str, port: int, directory: str, restarts: Callable[[], int]) -> int:
    """The parent's /metrics: every worker's metrics combined, and the restart count."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=directory)
    registry.register(_Restarts(restarts))
    server, _thread = start_http_server(port, addr=bare_host(host), registry=registry)
    return int(server.server_port)


def worker_gone(pid: int, directory: str) -> None:
    """Drop a dead worker's live gauges (its counters and histograms keep counting)."""
    mark_process_dead(pid, directory)
