"""The commands' own arguments, each declared once here. Training and method options are declared in
config.TrainConfig and each method's package (methods/<name>/__init__.py), and become flags through cli/derive.py."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

DEFAULT_DATASET = "digits"  # the embedded default, offline
Dataset = Annotated[str, typer.Option(help="Dataset name, e.g. digits or synthetic:n=600,classes=4.")]
Seed = Annotated[int, typer.Option(help="Seed of initialisation and data order.")]
Student = Annotated[str, typer.Option(help="Student model, e.g. mlp-small or mlp:width=128,depth=1.")]
Teacher = Annotated[Optional[str], typer.Option(help=
    "Teacher run id (or unique prefix), several comma-separated (sprkd's ensemble); default: the latest finished "
    "teacher of the dataset (for sprkd: with tracked saddles).")]
Json = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout instead of tables.")]
Resume = Annotated[Optional[str], typer.Option(metavar="RUN", help=
    "Continue an interrupted, crashed or failed run from its last saved training state (from its start if none was "
    "saved), with its stored configuration: no other training option may be given. It ends with the numbers of a run "
    "never stopped.")]
Reuse = Annotated[bool, typer.Option("--reuse", help=
    "If a finished run with the same config and seed exists, report it instead of training again.")]
