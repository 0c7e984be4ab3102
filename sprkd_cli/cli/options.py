"""Options shared by the commands that train: every hyperparameter is a flag with a default."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

TRAIN = "Training"
KD = "kd method"
HESSIAN = "Hessian during training"

Dataset = Annotated[str, typer.Option(help="Dataset name, e.g. digits or synthetic:n=600,classes=4.")]
DataDir = Annotated[Optional[str], typer.Option(help="Folder of the dataset's files (text tasks: a save_to_disk folder or train/validation parquet, csv, tsv or json files with GLUE's columns); default ./data.")]
ImageSize = Annotated[Optional[int], typer.Option(help="malaria: side in pixels the images are resized to (default 32).")]
Download = Annotated[bool, typer.Option("--download", help="Image datasets: download missing files (torchvision; malaria from the Hugging Face hub) into the data dir.")]
Augment = Annotated[bool, typer.Option("--augment", help="Random crop (padding 4) and horizontal flip of every training batch, seeded (CIFAR-style images).", rich_help_panel=TRAIN)]
Device = Annotated[str, typer.Option(help="auto (cuda, then mps, else cpu), cpu, cuda or mps.", rich_help_panel=TRAIN)]
SplitSeed = Annotated[int, typer.Option(help="Seed of the train/val/test split (stored with the run).")]
Epochs = Annotated[int, typer.Option(help="Training epochs.", rich_help_panel=TRAIN)]
BatchSize = Annotated[int, typer.Option(help="Mini-batch size.", rich_help_panel=TRAIN)]
Optimizer = Annotated[str, typer.Option(help="Base optimizer: adamw, adam or sgd.", rich_help_panel=TRAIN)]
Lr = Annotated[float, typer.Option(help="Learning rate.", rich_help_panel=TRAIN)]
WeightDecay = Annotated[float, typer.Option(help="Weight decay.", rich_help_panel=TRAIN)]
Momentum = Annotated[float, typer.Option(help="Momentum (sgd optimizer only).", rich_help_panel=TRAIN)]
Schedule = Annotated[str, typer.Option(help="Learning-rate schedule per step: cosine or constant.", rich_help_panel=TRAIN)]
Temperature = Annotated[Optional[float], typer.Option(help="kd temperature T (default 4).", rich_help_panel=KD)]
CeWeight = Annotated[Optional[float], typer.Option(help="kd weight a of the label CE (default 0.1).", rich_help_panel=KD)]
KdWeight = Annotated[Optional[float], typer.Option(help="kd weight b of T²·KL (default 0.9; sprkd: 0, no KD term).", rich_help_panel=KD)]
Json = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout instead of tables.")]
Resume = Annotated[Optional[str], typer.Option(metavar="RUN", help="Continue an interrupted, crashed or failed run from its last saved training state (from its start if none was saved), with its stored configuration: no other training option may be given. It ends with the numbers of a run never stopped.")]
CheckpointEvery = Annotated[float, typer.Option(help="Seconds between saved training states for --resume (at epoch ends; 0: every epoch). Not part of the experiment's config hash.")]
Reuse = Annotated[bool, typer.Option("--reuse", help="If a finished run with the same config and seed exists, report it instead of training again.")]
HessianEvery = Annotated[int, typer.Option(help="A Hessian report (top-5 and bottom-1 eigenvalues, Hutch++ trace) every N optimiser steps, stored with its step; 0: none.", rich_help_panel=HESSIAN)]
HessianDensity = Annotated[bool, typer.Option("--hessian-density", help="Add the SLQ eigenvalue density to the reports of --hessian-every.", rich_help_panel=HESSIAN)]

# sprkd (METHODS.md, "sprkd"): teachers' saddle tracking, the probe set, and the student's phases.
SADDLES = "Saddle tracking (sprkd teachers)"
PROBE = "Probe set (Hessian and probe loss)"
SPRKD = "sprkd method"
TrackSaddles = Annotated[bool, typer.Option("--track-saddles", help="Run the strong-saddle test on the probe Hessian during training and keep the strong saddles (sprkd teachers).", rich_help_panel=SADDLES)]
SaddleEvery = Annotated[int, typer.Option(help="The saddle test every N optimiser steps.", rich_help_panel=SADDLES)]
SaddleTopN = Annotated[int, typer.Option(help="Eigenvalues of largest magnitude the test looks at.", rich_help_panel=SADDLES)]
SaddleRule = Annotated[str, typer.Option(help="ratio (S- >= alpha*S+), magnitude (S- >= beta) or both.", rich_help_panel=SADDLES)]
SaddleAlpha = Annotated[float, typer.Option(help="alpha of the ratio rule.", rich_help_panel=SADDLES)]
SaddleBeta = Annotated[float, typer.Option(help="beta of the magnitude rule.", rich_help_panel=SADDLES)]
MaxSaddles = Annotated[int, typer.Option(help="Keep this many strong saddles, those of lowest probe loss.", rich_help_panel=SADDLES)]
ProbeBatches = Annotated[int, typer.Option(help="Probe set: batches drawn once from the run's seed.", rich_help_panel=PROBE)]
ProbeSize = Annotated[int, typer.Option(help="Probe set: examples per batch.", rich_help_panel=PROBE)]
ProbeMode = Annotated[str, typer.Option(help="Module mode during a probe: eval or train (restored after).", rich_help_panel=PROBE)]
NoAsr = Annotated[bool, typer.Option("--no-asr", help="Ablation: no ASR, injection or approach (the student starts from its own init).", rich_help_panel=SPRKD)]
NoNhe = Annotated[bool, typer.Option("--no-nhe", help="Ablation: no negative Hessian eigensteps.", rich_help_panel=SPRKD)]
NoPgd = Annotated[bool, typer.Option("--no-pgd", help="Ablation: no Gaussian perturbations.", rich_help_panel=SPRKD)]
AsrPick = Annotated[Optional[str], typer.Option(help="Each teacher's snapshot in the ASR: lowest-loss or last (default lowest-loss).", rich_help_panel=SPRKD)]
ApproachEps = Annotated[Optional[float], typer.Option(help="A tensor stops approaching at RMS distance <= eps from its target (default 1e-3).", rich_help_panel=SPRKD)]
ApproachMaxSteps = Annotated[Optional[int], typer.Option(help="Every tensor stops approaching after this many steps (default 200).", rich_help_panel=SPRKD)]
NheGradThreshold = Annotated[Optional[float], typer.Option(help="NHE/PGD only at steps with mini-batch ‖g‖₂ <= this (default 0.02).", rich_help_panel=SPRKD)]
NheMax = Annotated[Optional[int], typer.Option(help="At most this many negative-curvature eigensteps (default 50); attempts that find no negative eigenvalue do not count.", rich_help_panel=SPRKD)]
NheTol = Annotated[Optional[float], typer.Option(help="NHE steps only when lambda_min < -tol (default 1e-4).", rich_help_panel=SPRKD)]
NheScale = Annotated[Optional[float], typer.Option(help="NHE step length alpha = scale*|lambda_min| (default 0.5).", rich_help_panel=SPRKD)]
PgdEpochs = Annotated[Optional[int], typer.Option(help="Gaussian perturbations in the first N epochs only (default 15).", rich_help_panel=SPRKD)]
PgdSigma = Annotated[Optional[float], typer.Option(help="Perturbation sd, relative to each tensor's RMS (default 0.1).", rich_help_panel=SPRKD)]
Cooldown = Annotated[Optional[int], typer.Option(help="Steps after an NHE or PGD event before the next (default 10).", rich_help_panel=SPRKD)]

# sage (METHODS.md, "sage"): rounds of anchors, UMAP and synthetic vectors.
SAGE = "sage method"
SageRounds = Annotated[Optional[int], typer.Option(help="Rounds of synthesis (default 3).", rich_help_panel=SAGE)]
SageEvery = Annotated[Optional[int], typer.Option(help="A round every N epochs (default 1).", rich_help_panel=SAGE)]
SageUmapMax = Annotated[Optional[int], typer.Option(help="UMAP is fitted on at most this many real vectors plus all anchors (default 5000).", rich_help_panel=SAGE)]
SagePercentile = Annotated[Optional[float], typer.Option(help="Anchors: real examples at or above this percentile of student loss (default 90).", rich_help_panel=SAGE)]
SagePerAnchor = Annotated[Optional[int], typer.Option(help="Synthetic points per anchor (default 2).", rich_help_panel=SAGE)]
SageK = Annotated[Optional[int], typer.Option(help="Neighbours in the 2-D map an anchor picks from (default 5).", rich_help_panel=SAGE)]
SageSynth = Annotated[Optional[str], typer.Option(help="inverse (UMAP inverse transform of the 2-D point) or interpolate (the two original vectors); token sequences always interpolate (default inverse).", rich_help_panel=SAGE)]
SageMaxSynth = Annotated[Optional[int], typer.Option(help="A round adds at most min(10% of the training set, this) synthetic vectors (default 5000).", rich_help_panel=SAGE)]
