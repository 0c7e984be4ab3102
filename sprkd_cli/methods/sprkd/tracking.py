"""sprkd's phase 1, during train-teacher --track-saddles: saddle checks of the teacher's probe Hessian, and
the candidates kept as parameter snapshots (safetensors artifacts) with a saddle_points row each."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

from ...store import Store
from ...store import artifacts as store_artifacts
from .saddles import saddle_ratio

SADDLE_DIR = "saddles"


def save_snapshot(model, path: Path) -> None:
    """The model's trainable parameters as safetensors, their order kept in the metadata."""
    from ...engine.safetensors_io import write_tensors

    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    write_tensors(path, dict(named), {"order": json.dumps([n for n, _ in named])})


def load_snapshot(path: Path) -> list[tuple[str, object]]:
    """[(name, tensor)] in the model's parameter order; nothing is unpickled."""
    from ...engine.safetensors_io import read_tensors

    tensors, metadata = read_tensors(path, "saddle snapshot")
    order = json.loads(metadata.get("order", "null")) or sorted(tensors)
    return [(name, tensors[name]) for name in order]


def saddle_tracker(cfg, store: Store, run_id: str, model, data,
                   artifacts: Path) -> Callable[[int, int], None]:
    """on_step hook of --track-saddles: a saddle check every cfg.saddle_every steps (docs/methods.md, sprkd
    phase 1). A check with negative curvature among its eigenvalues is a candidate; the cfg.max_saddles
    candidates of highest S-/S+ and the cfg.max_saddles of highest S- are kept (parameters as an
    artifact, a saddle_points row), whatever rule a student applies later. Every check is a
    `saddle_check` event; storing and dropping are events too."""
    from ...activity import doing
    from ...hessian import ProbeSet, out_of_memory_message
    from .saddles import measure_saddle

    probe = ProbeSet.draw(data.x_train, data.y_train, n_batches=cfg.probe_batches, size=cfg.probe_size, seed=cfg.seed)

    def track(step: int, epoch: int) -> None:
        if step % cfg.saddle_every:
            return
        with out_of_memory_message(lambda: cfg.probe_micro_batch or sum(probe.sizes)), \
                doing(f"saddle check at step {step}"):
            loss, s, iterations = measure_saddle(model, probe, cfg.saddle_top_n, cfg.probe_mode, seed=cfg.seed + step)
        candidate = s.s_neg > 0
        facts = {"probe_loss": loss, "eigenvalues": s.eigenvalues, "s_neg": s.s_neg, "s_pos": s.s_pos,
                 "ratio": _finite(s.ratio)}
        store.add_event(run_id, "saddle_check", facts | {"candidate": candidate, "lanczos_iterations": iterations,
                                                         "top_n": cfg.saddle_top_n}, step=step, epoch=epoch)
        if not candidate:
            return
        kept = store.saddle_points(run_id)
        new = SimpleNamespace(id=None, step=step, s_neg=s.s_neg, s_pos=s.s_pos)
        keep = {id(p) for p in kept_candidates([*kept, new], cfg.max_saddles)}
        if id(new) not in keep:
            store.add_event(run_id, "saddle_dropped", facts | {"reason": _not_kept(cfg.max_saddles)},
                            step=step, epoch=epoch)
            return
        path = store_artifacts.join(artifacts, SADDLE_DIR, f"step-{step:07d}.safetensors")
        save_snapshot(model, path)
        saddle_id = store.add_saddle_point(run_id, step=step, epoch=epoch, probe_loss=loss, eigenvalues=s.eigenvalues,
                                           s_neg=s.s_neg, s_pos=s.s_pos, artifact=str(path))
        store.add_event(run_id, "saddle_stored", facts | {"saddle_id": saddle_id, "artifact": str(path)},
                        step=step, epoch=epoch)
        for old in kept:
            if id(old) not in keep:
                store.delete_saddle_point(old.id)
                store_artifacts.remove(store_artifacts.location(old.artifact))
                store.add_event(run_id, "saddle_dropped", {"saddle_id": old.id, "step": old.step,
                                                           "probe_loss": old.probe_loss, "s_neg": old.s_neg,
                                                           "s_pos": old.s_pos, "reason": _not_kept(cfg.max_saddles)},
                                step=step, epoch=epoch)

    return track


def kept_candidates(points: list, limit: int) -> list:
    """The `limit` points of highest S-/S+ and the `limit` of highest S- (earlier steps first on ties), in
    their given order; a point in both is kept once."""
    by_ratio = sorted(points, key=lambda p: (-saddle_ratio(p.s_neg, p.s_pos), p.step))[:limit]
    by_neg = sorted(points, key=lambda p: (-p.s_neg, p.step))[:limit]
    chosen = {id(p) for p in by_ratio + by_neg}
    return [p for p in points if id(p) in chosen]


def _not_kept(limit: int) -> str:
    return f"not among the {limit} of highest S-/S+ nor the {limit} of highest S-"


def _finite(x: float) -> float | None:
    return x if x != float("inf") else None
