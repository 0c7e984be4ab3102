"""What the recipes share: sprkd run as a user would, each command printed before it runs."""

from __future__ import annotations

import shlex
import subprocess
import sys


def sprkd(db: str | None, *args: str, capture: bool = False) -> str:
    """Run `sprkd [--db DB] ARGS`; its stdout when `capture`; a failing command ends the recipe with its code."""
    argv = [sys.executable, "-m", "sprkd_cli", *(["--db", db] if db else []), *args]
    print("$ sprkd " + " ".join(shlex.quote(a) for a in argv[3:]), flush=True)
    done = subprocess.run(argv, stdout=subprocess.PIPE if capture else None, text=True)
    if done.returncode != 0:
        sys.exit(done.returncode)
    return done.stdout or ""
