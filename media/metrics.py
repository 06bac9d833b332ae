"""``/metrics`` of a media node: Prometheus text read from the node's figures at scrape time
(nothing is updated per packet), node-wide and, with worker processes, per worker."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

COUNTERS = (
    "received_packets",
    "forwarded_packets",
    "forwarded_bytes",
    "retransmitted_packets",
    "keyframe_requests",
    "legs_failed",
    "layer_switches",
    "probes",
    "padding_probes",
    "probe_padding_packets",
    "probe_padding_bytes",
)

#: Per worker (label ``worker="i"``): name, help, key in ``WorkerPool.node_stats()["workers"]``.
WORKER_GAUGES = (
    ("callbook_sfu_worker_up", "1 while the worker process runs", "up"),
    ("callbook_sfu_worker_rooms", "Rooms on this worker", "rooms"),
    ("callbook_sfu_worker_participants", "Participants on this worker", "participants"),
    (
        "callbook_sfu_worker_forwarded_packets_per_second",
        "Packets this worker forwarded per second (over the last second)",
        "packets_per_s",
    ),
    ("callbook_sfu_worker_cpu_ratio", "CPU this worker used, in cores (last second)", "cpu"),
)


class NodeCollector(Collector):
    def __init__(self, stats: Callable[[], dict[str, Any] | None]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        stats = self._stats()
        if stats is None:
            return
        for name in ("rooms", "participants", "subscriptions"):
            yield GaugeMetricFamily(f"callbook_sfu_{name}", f"Current {name}", value=stats[name])
        for name in COUNTERS:
            yield CounterMetricFamily(f"callbook_sfu_{name}", name.replace("_", " "), stats[name])
        dropped = CounterMetricFamily(
            "callbook_sfu_dropped_packets", "Packets dropped, by reason", labels=["reason"]
        )
        for reason, count in sorted(stats["dropped"].items()):
            dropped.add_metric([reason], count)
        yield dropped
        yield from _simulcast(stats)
        workers = stats.get("workers")
        if workers:
            yield from _per_worker(workers)


def _simulcast(stats: dict[str, Any]) -> Iterator[Metric]:
    """Paused simulcast videos, and the spread of subscribers' bandwidth estimates (no
    per-subscriber series: their number is unbounded and they would name participants)."""
    yield GaugeMetricFamily(
        "callbook_sfu_video_paused",
        "Subscriptions whose simulcast video is paused (no layer fits, or a hidden tile)",
        value=stats.get("video_paused", 0),
    )
    values = sorted(stats.get("subscriber_estimates_bps", ()))
    yield GaugeMetricFamily(
        "callbook_sfu_subscribers_estimated",
        "Subscribers with a downlink bandwidth estimate (REMB)",
        value=len(values),
    )
    family = GaugeMetricFamily(
        "callbook_sfu_subscriber_estimate_bps",
        "Subscribers' downlink estimates in bit/s: lowest, median and highest",
        labels=["quantile"],
    )
    if values:
        middle = values[len(values) // 2]
        for label, value in (("0", values[0]), ("0.5", middle), ("1", values[-1])):
            family.add_metric([label], float(value))
    yield family


def _per_worker(workers: list[dict[str, Any]]) -> Iterator[Metric]:
    for name, text, key in WORKER_GAUGES:
        family = GaugeMetricFamily(name, text, labels=["worker"])
        for worker in workers:
            family.add_metric([str(worker["index"])], float(worker[key]))
        yield family
    for name, text, key in (
        ("callbook_sfu_worker_forwarded_packets", "Packets forwarded by this worker", "forwarded"),
        ("callbook_sfu_worker_restarts", "Times this worker was restarted", "restarts"),
        (
            "callbook_sfu_worker_hangs",
            "Times this worker answered nothing for --worker-hang-s and was killed",
            "hangs",
        ),
    ):
        counter = CounterMetricFamily(name, text, labels=["worker"])
        for worker in workers:
            counter.add_metric([str(worker["index"])], worker[key])
        yield counter
