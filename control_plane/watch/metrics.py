"""The watch loop's Prometheus metrics (names fixed by docs/reference.md §7), in a registry of its own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class WatchMetrics:
    def __init__(self):
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.managed = Gauge("cplane_managed_objects", "Rows cplane manages, per kind.", ["kind"], registry=r)
        self.drift = Gauge("cplane_drift_objects", "Managed rows edited outside cplane (drift), per kind.",
                           ["kind"], registry=r)
        self.pending = Gauge("cplane_pending_changes", "Changes the current plan holds (drift included).", registry=r)
        self.scheduled = Gauge("cplane_scheduled_changes", "Scheduled changes not yet due.", registry=r)
        self.next_scheduled = Gauge("cplane_next_scheduled_change_timestamp_seconds",
                                    "When the next scheduled change is due (0: none).", registry=r)
        self.last_reconcile = Gauge("cplane_last_reconcile_timestamp_seconds",
                                    "When the last reconcile round finished without error.", registry=r)
        self.last_apply = Gauge("cplane_last_apply_timestamp_seconds", "When the loop last applied changes.", registry=r)
        self.reconcile_duration = Histogram("cplane_reconcile_duration_seconds", "Duration of reconcile rounds.",
                                            buckets=DURATION_BUCKETS, registry=r)
        self.apply_duration = Histogram("cplane_apply_duration_seconds", "Duration of the loop's applies.",
                                        buckets=DURATION_BUCKETS, registry=r)
        self.errors = Counter("cplane_reconcile_errors", "Failed rounds, by type (config, database, apply, git, ...).",
                              ["type"], registry=r)
        self.window_blocked = Gauge("cplane_window_blocked", "1 while a change window blocks automatic applies.",
                                    registry=r)

    def set_per_kind(self, gauge: Gauge, values: dict[str, int], kinds) -> None:
        for kind in kinds:
            gauge.labels(kind=kind).set(values.get(kind, 0))

    def render(self) -> bytes:
        return generate_latest(self.registry)
