"""sprkd's method (docs/methods.md, "sprkd"): the ASR start and its approach, then base steps with the
gate's negative Hessian eigensteps and Gaussian perturbations."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ...errors import UserError
from ...hessian import ProbeSet
from ...seeds import derive_seed
from ..contract import Emit, Method, MethodContext, MethodOptions
from ..kd.loss import kd_loss
from ..targets import ensemble_targets
from .approach import Approach
from .asr import TeacherSaddle, build_asr
from .gate import Gate
from .inject import inject
from .nhe import eigenstep, elementwise_step, leading_pair, most_negative
from .pgd import perturb, perturbation_step
from .probe import probe_loss, restore, save
from .revive import revive

LANCZOS_MIN = 3  # an NHE attempt needs at least this many Lanczos steps (two eigenvalues and λmin)
PGD_SEED_OFFSET = 7_919  # the perturbations' private generator: seed + offset (the data order uses the seed)


class SPRKD(Method):
    def __init__(self, options: MethodOptions, data, *, probe_batches: int, probe_size: int, probe_mode: str,
                 batch_size: int, saddles: list[TeacherSaddle] | None = None,
                 teachers: list[torch.nn.Module] | None = None):
        """`options`: SPRKDOptions. `saddles`: one per teacher, for the ASR; `teachers`: their models, for the KD
        term (kd_weight > 0). The probe set (NHE with --nhe-hessian probe, --accept probe-loss, --asr-revive)
        and the NHE budget follow the run's training options."""
        self.o = options
        self.options = options
        self.data = data
        self.probe_batches, self.probe_size, self.probe_mode = probe_batches, probe_size, probe_mode
        self.batch_size = batch_size
        self.saddles = saddles or []
        if self.o.asr and not self.saddles:
            raise UserError("sprkd needs a saddle snapshot of each teacher for the ASR (or --no-asr)")
        self.p_teacher = self.neg_entropy = None
        if self.o.kd_weight > 0:
            self._cache_teacher_targets(teachers or [])
        self.emit: Emit = lambda *args, **kwargs: None
        self.approach: Approach | None = None
        self.approach_step = False
        self.gate: Gate | None = None
        self.nhe_attempts = 0
        self.nhe_misses = 0  # consecutive attempts that found no negative curvature
        self.nhe_resume_step = 0  # after a miss, no NHE attempt before this step
        self.last_loss = self.last_batch = None
        self.nhe_hvp = "func"
        self.budget_epoch, self.products_this_epoch = 0, 0  # NHE's Hessian-vector products in the current epoch

    @classmethod
    def prepare(cls, context: MethodContext) -> SPRKD:
        """The teachers' strong saddles (with the ASR) and their models (with a KD term), from the store."""
        from .teachers import teacher_saddles

        context.refuse_augment()
        options, cfg = context.options, context.config
        saddles = teacher_saddles(context.store, context.teacher_runs, options) if options.asr else []
        teachers = [context.load_model(run) for run in context.teacher_runs] if options.kd_weight > 0 else []
        return cls(options, context.data, probe_batches=cfg.probe_batches, probe_size=cfg.probe_size,
                   probe_mode=cfg.probe_mode, batch_size=cfg.batch_size, saddles=saddles, teachers=teachers)

    def _cache_teacher_targets(self, teachers: list[torch.nn.Module]) -> None:
        """The KD term's targets: softmax(t/T) averaged over the teachers (the ensemble), cached once."""
        if not teachers:
            raise UserError("--kd-weight > 0 needs a teacher model")
        self.p_teacher, self.neg_entropy = ensemble_targets(teachers, self.data.x_train, self.o.temperature)

    # -- hooks ------------------------------------------------------------------------------------
    def setup(self, model, *, seed, emit):
        self.emit = emit
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self.names = [n for n, _ in named]
        self.params = [p for _, p in named]
        device = self.params[0].device
        drawn = ProbeSet.draw(self.data.x_train, self.data.y_train, n_batches=self.probe_batches,
                              size=self.probe_size, seed=seed)
        self.probe = ProbeSet(drawn.indices, [(x.to(device), y.to(device)) for x, y in drawn.batches], drawn.seed)
        if self.p_teacher is not None:
            self.p_teacher, self.neg_entropy = self.p_teacher.to(device), self.neg_entropy.to(device)
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed + PGD_SEED_OFFSET)
        if not self.o.asr:  # the gate's distance is measured from the student's own start
            self.gate = Gate(self.o, self.names, self.params, [p.detach().clone() for p in self.params])
            return
        asr = build_asr(self.saddles)
        rule = {k: getattr(self.o, k) for k in ("saddle_rule", "saddle_alpha", "saddle_beta")}
        for s in self.saddles:
            if s.fallback:
                emit("asr_fallback", rule | {"teacher": s.teacher, "saddle_id": s.saddle_id, "step": s.step})
        emit("asr_built", {"pick": self.o.asr_pick, **rule, "teachers": [
            {"teacher": s.teacher, "model": s.model, "saddle_id": s.saddle_id, "step": s.step,
             "probe_loss": s.probe_loss, "fallback": s.fallback} for s in self.saddles]})
        student = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        targets, mapping = inject(asr, student)
        emit("injection", {"mapping": mapping})
        if self.o.asr_revive:
            emit("asr_revived", {"layers": revive(model, targets, self.probe)})
        self.gate = Gate(self.o, self.names, self.params, targets)
        self.approach = Approach([p for _, p in student], targets, self.o.approach_eps, self.o.approach_max_steps)
        if not self.approach.active:
            self._approach_finished(0, 0)

    def state_dict(self):
        approach = None if self.approach is None else {
            "targeting": list(self.approach.targeting), "steps": self.approach.steps,
            "stopped_by_limit": self.approach.stopped_by_limit}
        return {"approach": approach, "gate": self.gate.state_dict(), "nhe_attempts": self.nhe_attempts,
                "nhe_misses": self.nhe_misses, "nhe_resume_step": self.nhe_resume_step,
                "budget": [self.budget_epoch, self.products_this_epoch],
                "generator": self.generator.get_state()}

    def summary(self) -> dict:
        fallback = [s.teacher for s in self.saddles if s.fallback] if self.o.asr else []
        return {"asr_fallback": fallback} if fallback else {}

    def epoch_metrics(self) -> dict:
        """The gate's statistics over the epoch's base steps: the smallest per-tensor and whole mini-batch
        gradient 2-norm and the largest distance from the start; then a new epoch starts."""
        return self.gate.epoch_statistics()

    def check_state(self, state):
        if "gate" not in state or "budget" not in state:
            raise UserError("this run's saved state is from an earlier sprkd whose gate kept other state; it cannot "
                            "be resumed: start the run again")

    def load_state_dict(self, state):
        if state["approach"] is not None:
            self.approach.targeting = list(state["approach"]["targeting"])
            self.approach.steps = state["approach"]["steps"]
            self.approach.stopped_by_limit = state["approach"]["stopped_by_limit"]
        self.gate.load_state_dict(state["gate"])
        self.nhe_attempts = state["nhe_attempts"]
        self.nhe_misses = state["nhe_misses"]
        self.nhe_resume_step = state["nhe_resume_step"]
        self.budget_epoch, self.products_this_epoch = state["budget"]
        self.generator.set_state(state["generator"])

    def loss(self, model, x, y, index):
        self.last_batch = (x, y, index)
        loss = self._loss(model, x, y, index)
        self.last_loss = loss.detach()  # the gate's loss test reads it after the step, without the graph
        return loss

    def _loss(self, model, x, y, index):
        logits = model(x)
        if self.p_teacher is None:
            return F.cross_entropy(logits, y)
        return kd_loss(logits, y, self.p_teacher[index], self.neg_entropy[index], self.o.temperature, 1.0,
                       self.o.kd_weight)

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
                                        "max_distance": max(distances), "eps": self.o.approach_eps},
                  step=step, epoch=epoch)

    def after_step(self, model, step, epoch):
        o = self.o
        grads = [torch.zeros_like(p) if p.grad is None else p.grad for p in self.params]
        norms = torch.stack(torch._foreach_norm(grads)).tolist()
        loss = float(self.last_loss)
        gate = self.gate.check(norms, loss, step, epoch)
        if gate is None:
            return
        nhe_now = (o.nhe and self.nhe_attempts < o.nhe_max and step >= self.nhe_resume_step
                   and self._lanczos_steps(epoch) >= LANCZOS_MIN)
        if not (nhe_now or o.pgd):
            return
        probe_loss_now = None
        if nhe_now:
            probe_loss_now = self._nhe(model, grads, gate, step, epoch)
        if o.pgd:
            self._pgd(model, gate, probe_loss_now, step, epoch)
        self.gate.fired(step, loss)

    def _lanczos_steps(self, epoch: int) -> int:
        """The Lanczos steps the next NHE attempt may take: --nhe-lanczos-steps, within what is left of this
        epoch's budget (--nhe-budget training steps' worth of products)."""
        if epoch != self.budget_epoch:
            self.budget_epoch, self.products_this_epoch = epoch, 0
        o = self.o
        steps_per_epoch = math.ceil(len(self.data.y_train) / self.batch_size)
        examples = self.batch_size if o.nhe_hessian == "batch" else sum(len(y) for _, y in self.probe.batches)
        allowed = int(o.nhe_budget * steps_per_epoch * self.batch_size / examples)
        return min(o.nhe_lanczos_steps, allowed - self.products_this_epoch)

    def _nhe_probe(self) -> ProbeSet:
        """The data NHE's Hessian is taken on: the current mini-batch, or the run's probe set."""
        if self.o.nhe_hessian == "probe":
            return self.probe
        x, y, index = self.last_batch
        return ProbeSet([index.cpu()], [(x.detach(), y.detach())], None)

    def _nhe(self, model, grads, gate: dict, step: int, epoch: int) -> float | None:
        """One NHE attempt (it counts against --nhe-max whatever it finds); returns the probe loss after it
        when it measured one."""
        o = self.o
        self.nhe_attempts += 1
        probe = self._nhe_probe()
        seed = derive_seed(self.seed, step)
        find = leading_pair if o.nhe_step == "elementwise" else most_negative
        steps = self._lanczos_steps(epoch)
        try:  # forward-over-reverse HVPs: several times faster than double backward through convolutions
            pair = find(model, probe, self.probe_mode, self.nhe_hvp, seed=seed, max_iter=steps)
        except Exception:  # an op without a forward-mode rule: double backward for the rest of the run
            if self.nhe_hvp != "func":
                raise
            self.nhe_hvp = "double"
            pair = find(model, probe, self.probe_mode, self.nhe_hvp, seed=seed, max_iter=steps)
        self.products_this_epoch += pair.iterations
        info = gate | {"lambda": pair.value, "lanczos_iterations": pair.iterations, "converged": pair.converged,
                       "lanczos_steps_allowed": steps, "attempt": self.nhe_attempts, "hessian": o.nhe_hessian,
                       "step_kind": o.nhe_step}
        if not pair.value < -o.nhe_tol:  # no negative curvature: no step, and the next attempt waits longer
            self.nhe_misses += 1
            wait = max(1, o.cooldown) * 2 ** self.nhe_misses
            self.nhe_resume_step = step + wait
            self.emit("nhe_skipped", info | {"tol": o.nhe_tol, "next_attempt_after": wait}, step=step, epoch=epoch)
            return None
        self.nhe_misses = 0
        if o.nhe_step == "elementwise":
            return self._elementwise(model, grads, pair, info, step, epoch)
        return self._eigenvector(model, grads, pair, info, step, epoch)

    def _elementwise(self, model, grads, pair, info: dict, step: int, epoch: int) -> float | None:
        checked = self.o.accept == "probe-loss"
        before = probe_loss(model, self.probe, self.probe_mode) if checked else None
        saved = save(self.params) if checked else None
        weight = elementwise_step(self.params, grads, pair)
        after = probe_loss(model, self.probe, self.probe_mode) if checked else None
        kept = not checked or after < before
        if not kept:
            restore(self.params, saved)
            after = before
        self.emit("nhe_kept" if kept else "nhe_reverted",
                  info | {"weight": weight, "loss_before": before, "loss_after": after}, step=step, epoch=epoch)
        return after

    def _eigenvector(self, model, grads, pair, info: dict, step: int, epoch: int) -> float:
        def halved(alpha, loss_tried, next_alpha):
            self.emit("nhe_halved", info | {"alpha": alpha, "loss_tried": loss_tried, "next_alpha": next_alpha},
                      step=step, epoch=epoch)

        checked = self.o.accept == "probe-loss"
        outcome = eigenstep(model, self.params, grads, pair, self.probe, self.o.nhe_scale, self.probe_mode,
                            max_halvings=3 if checked else 0, on_halve=halved, always=not checked)
        self.emit("nhe_kept" if outcome.kept else "nhe_reverted",
                  info | {"alpha": outcome.alpha, "halvings": outcome.halvings, "sign": outcome.sign,
                          "loss_before": outcome.loss_before, "loss_after": outcome.loss_after},
                  step=step, epoch=epoch)
        return outcome.loss_after

    def _pgd(self, model, gate: dict, loss_before: float | None, step: int, epoch: int) -> None:
        o = self.o
        relative = o.pgd_noise == "relative"
        params = self.params if relative else [self.params[gate["tensor_index"]]]
        facts = gate | {"noise": o.pgd_noise, "sigma": o.pgd_sigma}
        if o.accept == "always":
            perturb(params, o.pgd_sigma, self.generator, relative)
            self.emit("pgd_kept", facts, step=step, epoch=epoch)
            return
        outcome = perturbation_step(model, params, self.probe, o.pgd_sigma, self.generator, self.probe_mode,
                                    loss_before=loss_before, relative=relative)
        self.emit("pgd_kept" if outcome.kept else "pgd_reverted",
                  facts | {"loss_before": outcome.loss_before, "loss_tried": outcome.tried_loss},
                  step=step, epoch=epoch)


__all__ = ["SPRKD", "TeacherSaddle"]
