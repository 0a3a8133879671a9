"""Prometheus metrics of the controller (one registry per controller: tests run several)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

STATES = (
    "unknown",
    "stopped",
    "stopping",
    "starting",
    "booting",
    "ready",
    "unavailable",
    "missing",
)
"""States of the instance the controller owns, as it sees them: the GPU worker in worker mode
(``booting``: instance running, Ollama not yet), the AWS control node in gate mode (``booting``:
instance running, the AWS-side gpu-waker not answering yet)."""


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.state = Gauge(
            "gpu_waker_worker_state",
            "1 for the current state of the GPU worker (gate mode: of the AWS control node)",
            ["state"],
            registry=r,
        )
        self.wakes = Counter(
            "gpu_waker_wakes_total",
            "StartInstances calls that EC2 accepted",
            ["trigger"],
            registry=r,
        )
        self.start_refusals = Counter(
            "gpu_waker_start_refusals_total",
            "StartInstances calls EC2 refused",
            ["code"],
            registry=r,
        )
        self.wake_duration = Histogram(
            "gpu_waker_wake_duration_seconds",
            "From the wake decision to Ollama answering",
            buckets=(10, 30, 60, 90, 120, 150, 180, 240, 300, 450, 600, 900),
            registry=r,
        )
        self.held = Gauge(
            "gpu_waker_requests_held", "Requests waiting for the worker to come up", registry=r
        )
        self.in_flight = Gauge(
            "gpu_waker_requests_in_flight", "Requests being forwarded to Ollama", registry=r
        )
        # Ollama's own latency as clients see it (Ollama exposes no Prometheus metrics): only
        # requests that are use (chat, generate, embeddings), not model lists.
        self.upstream_first_byte = Histogram(
            "gpu_waker_upstream_first_byte_seconds",
            "From forwarding a request to Ollama's response headers (model load, prompt)",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
            registry=r,
        )
        self.upstream_duration = Histogram(
            "gpu_waker_upstream_duration_seconds",
            "From forwarding a request to the last byte of Ollama's reply (streams included)",
            buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200),
            registry=r,
        )
        self.requests = Counter(
            "gpu_waker_requests_total", "Client requests by outcome", ["outcome"], registry=r
        )
        self.stops = Counter("gpu_waker_stops_total", "StopInstances calls", ["reason"], registry=r)
        self.sleeps = Counter(
            "gpu_waker_sleeps_total",
            "StopInstances calls on the control node itself (the whole AWS side sleeps)",
            registry=r,
        )
        self.cluster_errors = Counter(
            "gpu_waker_cluster_errors_total", "Failed reads of the Kubernetes API", registry=r
        )
        for state in STATES:
            self.state.labels(state).set(0)
        self.state.labels("unknown").set(1)

    def set_state(self, current: str) -> None:
        for state in STATES:
            self.state.labels(state).set(1 if state == current else 0)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
