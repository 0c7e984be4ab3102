"""sprkd: Saddle Point Recruitment for Knowledge Distillation (METHODS.md, "sprkd").

The student starts from its own seeded initialisation, approaches the teachers' Approximated
Saddle Region injected into its shapes, then trains with the base optimiser, with negative
Hessian eigensteps and Gaussian perturbations at small-gradient steps, each gated on the probe loss.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ...errors import UserError
from ...hessian import ProbeSet
from ...seeds import derive_seed
from ..base import EventSink, Method
from ..kd import kd_loss
from ..targets import ensemble_targets
from .approach import Approach
from .asr import TeacherSaddle, build_asr
from .inject import inject
from .nhe import eigenstep, most_negative
from .pgd import perturbation_step
from .probe import probe_loss

NHE_HVP = "double"  # one first-order graph kept for the fixed probe set: the cheaper kind on small students
PGD_SEED_OFFSET = 7_919  # the perturbations' private generator: seed + offset (the data order uses the seed)


class SPRKD(Method):
    name = "sprkd"
    needs_teacher = True
    needs_saddles = True

    def __init__(self, options: dict, teacher=None, data=None, *, saddles: list[TeacherSaddle] | None = None,
                 teachers: list[torch.nn.Module] | None = None):
        self.o = dict(options)
        self.data = data
        self.saddles = saddles or []
        if self.o["asr"] and not self.saddles:
            raise UserError("sprkd needs a saddle snapshot of each teacher for the ASR (or --no-asr)")
        self.p_teacher = self.neg_entropy = None
        if self.o["kd_weight"] > 0:
            self._cache_teacher_targets(teachers or ([teacher] if teacher is not None else []))
        self.emit: EventSink = lambda *args, **kwargs: None
        self.approach: Approach | None = None
        self.approach_step = False
        self.last_event_step: int | None = None
        self.nhe_attempts = 0
        self.gate_seen: dict[str, float] = {}

    def _cache_teacher_targets(self, teachers: list[torch.nn.Module]) -> None:
        """The KD term's targets: softmax(t/T) averaged over the teachers (the ensemble), cached once."""
        if not teachers:
            raise UserError("--kd-weight > 0 needs a teacher model")
        self.p_teacher, self.neg_entropy = ensemble_targets(teachers, self.data.x_train, self.o["temperature"])

    # -- hooks ------------------------------------------------------------------------------------
    def setup(self, model, *, seed, emit):
        self.emit = emit
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self.names = [n for n, _ in named]
        self.params = [p for _, p in named]
        device = self.params[0].device
        drawn = ProbeSet.draw(self.data.x_train, self.data.y_train, n_batches=self.o["probe_batches"],
                              size=self.o["probe_size"], seed=seed)
        self.probe = ProbeSet(drawn.indices, [(x.to(device), y.to(device)) for x, y in drawn.batches], drawn.seed)
        if self.p_teacher is not None:
            self.p_teacher, self.neg_entropy = self.p_teacher.to(device), self.neg_entropy.to(device)
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed + PGD_SEED_OFFSET)
        if not self.o["asr"]:
            return
        asr = build_asr(self.saddles)
        rule = {k: self.o[k] for k in ("saddle_rule", "saddle_alpha", "saddle_beta")}
        for s in self.saddles:
            if s.fallback:
                emit("asr_fallback", rule | {"teacher": s.teacher, "saddle_id": s.saddle_id, "step": s.step})
        emit("asr_built", {"pick": self.o["asr_pick"], **rule, "teachers": [
            {"teacher": s.teacher, "model": s.model, "saddle_id": s.saddle_id, "step": s.step,
             "probe_loss": s.probe_loss, "fallback": s.fallback} for s in self.saddles]})
        student = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        targets, mapping = inject(asr, student)
        emit("injection", {"mapping": mapping})
        self.approach = Approach([p for _, p in student], targets, self.o["approach_eps"], self.o["approach_max_steps"])
        if not self.approach.active:
            self._approach_finished(0, 0)

    def state_dict(self):
        approach = None if self.approach is None else {
            "targeting": list(self.approach.targeting), "steps": self.approach.steps,
            "stopped_by_limit": self.approach.stopped_by_limit}
        return {"approach": approach, "last_event_step": self.last_event_step, "nhe_attempts": self.nhe_attempts,
                "generator": self.generator.get_state()}

    def summary(self) -> dict:
        fallback = [s.teacher for s in self.saddles if s.fallback] if self.o["asr"] else []
        return {"asr_fallback": fallback} if fallback else {}

    def epoch_metrics(self) -> dict:
        """The gate's statistic over the epoch's base steps: the smallest per-tensor and the smallest whole
        mini-batch gradient 2-norm; then a new epoch starts."""
        seen, self.gate_seen = self.gate_seen, {}
        return seen

    def load_state_dict(self, state):
        if state["approach"] is not None:
            self.approach.targeting = list(state["approach"]["targeting"])
            self.approach.steps = state["approach"]["steps"]
            self.approach.stopped_by_limit = state["approach"]["stopped_by_limit"]
        self.last_event_step = state["last_event_step"]
        self.nhe_attempts = state["nhe_attempts"]
        self.generator.set_state(state["generator"])

    def loss(self, model, x, y, index):
        logits = model(x)
        if self.p_teacher is None:
            return F.cross_entropy(logits, y)
        return kd_loss(logits, y, self.p_teacher[index], self.neg_entropy[index], self.o["temperature"], 1.0,
                       self.o["kd_weight"])

    def replace_step(self, model, step, epoch):
        self.approach_step = self.approach is not None and self.approach.active
        if self.approach_step:
            self.approach.step(step)
            if not self.approach.active:
                self._approach_finished(step, epoch)
        return self.approach_step

    def _approach_finished(self, step: int, epoch: int) -> None:
        distances = self.approach.distances()
        self.emit("approach_finished", {"steps": self.approach.steps, "stopped_by": "limit" if
                                        self.approach.stopped_by_limit else "eps",
                                        "max_distance": max(distances), "eps": self.o["approach_eps"]},
                  step=step, epoch=epoch)

    def after_step(self, model, step, epoch):
        o = self.o
        grads = [torch.zeros_like(p) if p.grad is None else p.grad for p in self.params]
        norms = torch.stack(torch._foreach_norm(grads)).tolist()
        grad_norm = math.sqrt(sum(n * n for n in norms))
        smallest = min(range(len(norms)), key=norms.__getitem__)
        self.gate_seen["gate_tensor_norm"] = min(self.gate_seen.get("gate_tensor_norm", math.inf), norms[smallest])
        self.gate_seen["gate_grad_norm"] = min(self.gate_seen.get("gate_grad_norm", math.inf), grad_norm)
        if self.last_event_step is not None and step - self.last_event_step <= o["cooldown"]:
            return
        nhe_now = o["nhe"] and self.nhe_attempts < o["nhe_max"]
        pgd_now = o["pgd"] and epoch <= o["pgd_epochs"] and (nhe_now or not o["nhe"])
        if not (nhe_now or pgd_now):
            return
        if o["nhe_gate"] == "tensor":  # some tensor's gradient is small (the reference implementation's gate)
            if not norms[smallest] < o["nhe_grad_threshold"]:
                return
            gate = {"gate": "tensor", "tensor": self.names[smallest], "tensor_norm": norms[smallest]}
        else:
            if grad_norm > o["nhe_grad_threshold"]:
                return
            gate = {"gate": "global"}
        gate["grad_norm"] = grad_norm
        loss = None
        if nhe_now:
            loss = self._eigenstep(model, grads, gate, step, epoch)
        if pgd_now:
            outcome = perturbation_step(model, self.params, self.probe, o["pgd_sigma"], self.generator,
                                        o["probe_mode"], loss_before=loss)
            self.emit("pgd_kept" if outcome.kept else "pgd_reverted",
                      gate | {"sigma": o["pgd_sigma"], "loss_before": outcome.loss_before,
                              "loss_tried": outcome.tried_loss}, step=step, epoch=epoch)
        self.last_event_step = step

    def _eigenstep(self, model, grads, gate: dict, step: int, epoch: int) -> float:
        """One NHE attempt; returns the probe loss after it."""
        o = self.o
        pair = most_negative(model, self.probe, o["probe_mode"], NHE_HVP, seed=derive_seed(self.seed, step))
        info = gate | {"lambda_min": pair.value, "lanczos_iterations": pair.iterations, "converged": pair.converged,
                       "eigensteps_before": self.nhe_attempts}
        if not pair.value < -o["nhe_tol"]:  # no negative curvature: no eigenstep, none counted against --nhe-max
            loss = probe_loss(model, self.probe, o["probe_mode"])
            self.emit("nhe_skipped", info | {"probe_loss": loss, "tol": o["nhe_tol"]}, step=step, epoch=epoch)
            return loss
        self.nhe_attempts += 1

        def halved(alpha, loss_tried, next_alpha):
            self.emit("nhe_halved", info | {"alpha": alpha, "loss_tried": loss_tried, "next_alpha": next_alpha},
                      step=step, epoch=epoch)

        outcome = eigenstep(model, self.params, grads, pair, self.probe, o["nhe_scale"], o["probe_mode"],
                            on_halve=halved)
        self.emit("nhe_kept" if outcome.kept else "nhe_reverted",
                  info | {"alpha": outcome.alpha, "halvings": outcome.halvings, "sign": outcome.sign,
                          "loss_before": outcome.loss_before, "loss_after": outcome.loss_after},
                  step=step, epoch=epoch)
        return outcome.loss_after


__all__ = ["SPRKD", "TeacherSaddle"]
