"""Options shared by the commands that train: every hyperparameter is a flag with a default."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

TRAIN = "Training"
KD = "kd method"
HESSIAN = "Hessian during training"

Dataset = Annotated[str, typer.Option(help="Dataset name, e.g. digits or synthetic:n=600,classes=4.")]
SplitSeed = Annotated[int, typer.Option(help="Seed of the train/val/test split (stored with the run).")]
Epochs = Annotated[int, typer.Option(help="Training epochs.", rich_help_panel=TRAIN)]
BatchSize = Annotated[int, typer.Option(help="Mini-batch size.", rich_help_panel=TRAIN)]
Optimizer = Annotated[str, typer.Option(help="Base optimizer: adamw, adam or sgd.", rich_help_panel=TRAIN)]
Lr = Annotated[float, typer.Option(help="Learning rate.", rich_help_panel=TRAIN)]
WeightDecay = Annotated[float, typer.Option(help="Weight decay.", rich_help_panel=TRAIN)]
Momentum = Annotated[float, typer.Option(help="Momentum (sgd optimizer only).", rich_help_panel=TRAIN)]
Schedule = Annotated[str, typer.Option(help="Learning-rate schedule per step: cosine or constant.", rich_help_panel=TRAIN)]
Temperature = Annotated[Optional[float], typer.Option(help="kd temperature T [default: 4].", rich_help_panel=KD)]
CeWeight = Annotated[Optional[float], typer.Option(help="kd weight a of the label CE [default: 0.1].", rich_help_panel=KD)]
KdWeight = Annotated[Optional[float], typer.Option(help="kd weight b of T²·KL [default: 0.9].", rich_help_panel=KD)]
Json = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout instead of tables.")]
Reuse = Annotated[bool, typer.Option("--reuse", help="If a finished run with the same config and seed exists, report it instead of training again.")]
HessianEvery = Annotated[int, typer.Option(help="A Hessian report (top-5 and bottom-1 eigenvalues, Hutch++ trace) every N optimiser steps, stored with its step; 0: none.", rich_help_panel=HESSIAN)]
HessianDensity = Annotated[bool, typer.Option("--hessian-density", help="Add the SLQ eigenvalue density to the reports of --hessian-every.", rich_help_panel=HESSIAN)]
