"""Phase 3's gate: when NHE and PGD may act on a student after its approach.

At a base step the gate opens when every one of these holds (docs/methods.md, "sprkd"):

- the gradient test: some trainable tensor's mini-batch gradient has ‖g_i‖₂ < j (`tensor`; the first such
  tensor is the one PGD perturbs), or the whole gradient has ‖g‖₂ <= j (`global`);
- the student has moved from its start: mean over tensors of |‖S_i‖₂ − ‖T_i‖₂| > δ (`gate_distance`);
- after an earlier event, the mini-batch training loss has fallen by at least `gate_loss_drop` since;
- `cooldown` steps have passed since the last event, and the epoch is within `gate_epochs`.

Each epoch the gate's statistics are kept (the smallest per-tensor and whole gradient norm, the largest
distance from the start), so a user can see how close a shut gate came to opening.
"""

from __future__ import annotations

import math

import torch


class Gate:
    def __init__(self, options, names: list[str], params: list[torch.Tensor], starts: list[torch.Tensor]):
        self.o = options  # SPRKDOptions
        self.names = names
        self.params = params
        self.start_norms = torch.stack(torch._foreach_norm([t.detach() for t in starts]))
        self.last_event_step: int | None = None
        self.loss_at_event: float | None = None
        self.seen: dict[str, float] = {}

    def distance(self) -> float:
        """Mean over tensors of |‖S_i‖₂ − ‖T_i‖₂|."""
        norms = torch.stack(torch._foreach_norm([p.detach() for p in self.params]))
        return float((norms - self.start_norms.to(norms.device)).abs().mean())

    def check(self, norms: list[float], loss: float, step: int, epoch: int) -> dict | None:
        """The gate's facts when it opens at this step (with `tensor`, the index of the tensor it names),
        else None. `norms` are the per-tensor mini-batch gradient norms."""
        o = self.o
        grad_norm = math.sqrt(sum(n * n for n in norms))
        smallest = min(range(len(norms)), key=norms.__getitem__)
        distance = self.distance()
        self._see("gate_tensor_norm", norms[smallest], min)
        self._see("gate_grad_norm", grad_norm, min)
        self._see("gate_distance", distance, max)
        if epoch > o.gate_epochs:
            return None
        if self.last_event_step is not None and step - self.last_event_step <= o.cooldown:
            return None
        if o.nhe_gate == "tensor":
            if not norms[smallest] < o.nhe_grad_threshold:
                return None
            facts = {"gate": "tensor", "tensor": self.names[smallest], "tensor_index": smallest,
                     "tensor_norm": norms[smallest]}
        else:
            if grad_norm > o.nhe_grad_threshold:
                return None
            facts = {"gate": "global", "tensor_index": smallest}
        if o.gate_distance > 0 and not distance > o.gate_distance:
            return None
        if (o.gate_loss_drop > 0 and self.loss_at_event is not None
                and self.loss_at_event - loss < o.gate_loss_drop):
            return None
        return facts | {"grad_norm": grad_norm, "distance": distance, "train_loss": loss,
                        "loss_at_last_event": self.loss_at_event}

    def fired(self, step: int, loss: float) -> None:
        self.last_event_step, self.loss_at_event = step, loss

    def epoch_statistics(self) -> dict[str, float]:
        seen, self.seen = self.seen, {}
        return seen

    def state_dict(self) -> dict:
        return {"last_event_step": self.last_event_step, "loss_at_event": self.loss_at_event}

    def load_state_dict(self, state: dict) -> None:
        self.last_event_step = state["last_event_step"]
        self.loss_at_event = state.get("loss_at_event")

    def _see(self, key: str, value: float, pick) -> None:
        self.seen[key] = pick(self.seen.get(key, value), value)
