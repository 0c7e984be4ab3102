"""SAGE's implementation (docs/methods.md, "sage").

The teacher's frozen `embed` vectorises the training inputs (once for vision; batch by batch for
token sequences, whose vectors are too big to keep: pool.py); the student's `body` trains on those
vectors (the student gets the teacher's input layer, frozen, so that it is evaluated on the same
vectors). Every `sage_every` epochs, up to `sage_rounds` times, a round finds the real
examples of highest student loss (anchors), maps real vectors to 2-D with a seeded UMAP, makes
synthetic vectors between each anchor and one of its map neighbours, and has the teacher's body
label them; synthetic vectors then join the pool with the KD term only.

Devices: the vectors, the teacher's targets, the pool and its recipes live on the model's device (the
teacher's, which the run puts there); UMAP, its inverse transform and the neighbour search run on the
CPU, reached through pool.to_host and pool.to_device.
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from ...activity import doing
from ...errors import UserError
from ...seeds import derive_seed
from ..contract import Emit, Method, MethodContext, MethodOptions
from ..kd.loss import kd_loss
from ..targets import soft_targets
from .pool import RealVectors, SyntheticPool
from .rounds import (
    BUDGET_FRACTION,
    UMAP_PARAMS,
    body_logits,
    fit_umap,
    per_example_loss,
    pooled_rows,
    select_anchors,
    synthesis_chunks,
    synthesise,
    timed,
    umap_rows,
)


def width(shape: tuple[int, ...], tokens: bool) -> int:
    """Feature width of one example's vector: hidden size of token vectors, else the first axis
    (features of an MLP, channels of a CNN)."""
    return shape[-1] if tokens else shape[0]


class SAGE(Method):
    def __init__(self, options: MethodOptions, teacher: torch.nn.Module, data):
        self.options = options
        self.temperature = options.temperature
        self.ce_weight = options.ce_weight
        self.kd_weight = options.kd_weight
        self.teacher = teacher.eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        self.x_sample = data.x_train[:1]
        self.real = RealVectors(teacher, data.x_train)
        self.device = self.real.device
        self.labels = data.y_train.to(self.device)
        self.p_teacher, self.neg_entropy = soft_targets(body_logits(teacher, self.real.chunks()), self.temperature)
        self.pool = SyntheticPool(self.real, self.p_teacher.shape[1])
        self.budget = min(int(BUDGET_FRACTION * len(self.labels)), options.sage_max_synth)
        self.rounds_done = 0
        self.seed = 0
        self.emit: Emit = lambda *args, **kwargs: None
        self._order = torch.zeros(0, dtype=torch.long, device=self.device)
        self._real_seen = 0
        self._syn_used = 0

    @classmethod
    def prepare(cls, context: MethodContext) -> SAGE:
        context.refuse_augment()
        return cls(context.options, context.one_teacher(), context.data)

    # --- hooks ------------------------------------------------------------------------------
    def setup(self, model, *, seed: int, emit: Emit) -> None:
        """Check the student's body takes the teacher's vectors, and give it the teacher's input layer, frozen."""
        self.seed, self.emit = seed, emit
        with torch.no_grad():
            student_vectors, _ = model.vectorise(self.x_sample.to(next(model.parameters()).device))
        tokens = self.real.tokens
        theirs, ours = self.real.shape, tuple(student_vectors.shape[1:])
        if width(theirs, tokens) != width(ours, tokens):
            raise UserError(
                f"sage feeds the teacher's embedding vectors to the student's body: the teacher's embed width is "
                f"{width(theirs, tokens)} but the student's body takes width {width(ours, tokens)}; choose a student "
                f"whose embed width is {width(theirs, tokens)}"
            )
        try:
            model.embed.load_state_dict(self.teacher.embed.state_dict())
        except RuntimeError as exc:
            from ...models.hf import HFClassifier, embed_config

            if not isinstance(self.teacher, HFClassifier):
                raise UserError(
                    "sage gives the student the teacher's input layer (frozen), but the two embed modules differ: "
                    + " ".join(str(exc).split())[:300]
                ) from None
            # transformers of two families (say a BERT teacher, token types and all, and a DistilBERT
            # student): the student takes a copy of the teacher's embedding module itself, and its
            # checkpoints carry that module's config, so that the run's model can be rebuilt
            # (services.runs.load_run_model) without the teacher's files
            model.embed = copy.deepcopy(self.teacher.embed)
            model.checkpoint_metadata = {"embed_config": embed_config(self.teacher)}
        for p in model.embed.parameters():
            p.requires_grad_(False)

    def state_dict(self) -> dict:
        """The rounds done and the synthetic pool (the per-epoch order is redrawn at each epoch's start)."""
        return {"rounds_done": self.rounds_done, **self.pool.state_dict()}

    def check_state(self, state: dict) -> None:
        self.pool.check_state(state)

    def load_state_dict(self, state: dict) -> None:
        self.rounds_done = state["rounds_done"]
        self.pool.load_state_dict(state)

    def start_epoch(self, model, epoch: int, step: int) -> None:
        every, rounds = self.options.sage_every, self.options.sage_rounds
        if epoch > 1 and (epoch - 1) % every == 0 and self.rounds_done < rounds:
            with doing(f"sage round {self.rounds_done + 1}/{rounds} (UMAP, inversion)"):
                self.run_round(model, epoch, step)
        generator = torch.Generator().manual_seed(derive_seed(self.seed, epoch))
        self._order = torch.randperm(len(self.pool), generator=generator).to(self.device)
        self._real_seen = 0
        self._syn_used = 0

    def loss(self, model, x, y, index):
        index = index.to(self.device)
        vectors, mask = self.real.get(index)
        real = kd_loss(model.from_vectors(vectors, mask), y, self.p_teacher[index],
                       self.neg_entropy[index], self.temperature, self.ce_weight, self.kd_weight)
        # every synthetic vector once per epoch, spread over the epoch's batches in proportion
        self._real_seen += len(index)
        until = min(len(self._order), round(self._real_seen * len(self._order) / len(self.labels)))
        take = self._order[self._syn_used:until]
        self._syn_used = max(self._syn_used, until)
        if len(take) == 0:
            return real
        syn_vectors, syn_mask = self.pool.get(take)
        synthetic = kd_loss(model.from_vectors(syn_vectors, syn_mask), torch.zeros_like(take),
                            self.pool.p[take], self.pool.neg_entropy[take], self.temperature, 0.0, self.kd_weight)
        return (len(index) * real + len(take) * synthetic) / (len(index) + len(take))

    # --- one round --------------------------------------------------------------------------
    def run_round(self, model, epoch: int, step: int) -> dict:
        """Steps 2-6 of a round (step 1, training on the pool, is the epochs between rounds)."""
        o = self.options
        self.rounds_done += 1
        rng = np.random.default_rng([self.seed, self.rounds_done])
        losses, loss_seconds = timed(per_example_loss, model, self.real, self.labels, self.p_teacher,
                                     self.neg_entropy, self.temperature, self.ce_weight, self.kd_weight)
        anchors, threshold = select_anchors(losses, o.sage_percentile)
        rows = umap_rows(len(losses), anchors, o.sage_umap_max, rng)
        reducer, umap_seconds = timed(lambda: fit_umap(pooled_rows(self.real, rows), self.seed + self.rounds_done))
        made, synth_seconds = timed(synthesise, reducer, rows, anchors, losses, self.real,
                                    per_anchor=o.sage_per_anchor, k=o.sage_k, budget=self.budget,
                                    mode=o.sage_synth, rng=rng)
        logits, label_seconds = timed(body_logits, self.teacher, synthesis_chunks(self.real, made))
        if len(made):
            self.pool.add(made, *soft_targets(logits, self.temperature))
        self.last_round = {"anchors": anchors, "rows": rows, "synthesis": made, "losses": losses}
        record = {
            "round": self.rounds_done, "anchors": int(len(anchors)), "threshold": threshold,
            "synthetic": len(made), "pool_synthetic": len(self.pool), "budget": self.budget,
            "umap_points": int(len(rows)), "umap_seconds": umap_seconds, "label_seconds": label_seconds,
            "synth_seconds": synth_seconds, "loss_seconds": loss_seconds,
            "synth": "interpolate" if self.real.tokens else o.sage_synth, "umap": UMAP_PARAMS,
        }
        self.emit("sage_round", record, step=step, epoch=epoch)
        return record
