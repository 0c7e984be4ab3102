"""A run's event log as the services write and read it: events held until the run exists, and the counts
that train-teacher, distill and runs show report."""

from __future__ import annotations

from collections import Counter

from ..store import Store


class RunEvents:
    """emit(kind, payload, step=None, epoch=None) for a method: events are held until the run exists
    (a method's setup runs before the run is recorded), then written as they come."""

    def __init__(self):
        self.pending: list[tuple] = []
        self.store: Store | None = None
        self.run_id: str | None = None

    def __call__(self, kind: str, payload: dict | None = None, step: int | None = None, epoch: int | None = None):
        if self.store is None:
            self.pending.append((kind, payload, step, epoch))
        else:
            self.store.add_event(self.run_id, kind, payload, step=step, epoch=epoch)

    def discard(self) -> None:
        """Drop the events held so far (a resumed run's setup: they were recorded when it started)."""
        self.pending = []

    def attach(self, store: Store, run_id: str) -> None:
        self.store, self.run_id = store, run_id
        for kind, payload, step, epoch in self.pending:
            store.add_event(run_id, kind, payload, step=step, epoch=epoch)
        self.pending = []


COUNTED = ("saddle_stored", "saddle_dropped", "asr_fallback", "nhe_kept", "nhe_halved", "nhe_reverted", "nhe_skipped",
           "pgd_kept", "pgd_reverted")


def event_counts(store: Store, run_id: str) -> dict:
    """Saddles kept and stored, NHE and PGD outcomes, and the approach's step count of a run."""
    events = store.events(run_id)
    counts = Counter(e.kind for e in events)
    approach = [e.payload for e in events if e.kind == "approach_finished"]
    return {"saddles": len(store.saddle_points(run_id)), **{k: counts.get(k, 0) for k in COUNTED},
            "approach_steps": approach[-1]["steps"] if approach else 0, "events": len(events)}


def injection_mapping(store: Store, run_id: str) -> list[dict]:
    return next((e.payload["mapping"] for e in store.events(run_id) if e.kind == "injection"), [])
