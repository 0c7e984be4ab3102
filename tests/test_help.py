"""--help of every command: flags without a type, options with fixed values as choices that list them
and that the parser refuses others of, help text that Rich's markup does not eat."""

from __future__ import annotations

import pytest
import typer
from rich.text import Text

from sprkd_cli.cli import app

from conftest import assert_user_error, sprkd


def _commands(command, path=()):
    """(path, click command) of every command under `command`, groups included."""
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, (*path, name))


COMMANDS = list(_commands(typer.main.get_command(app)))


def _choices(param) -> tuple[str, ...] | None:
    descriptor = getattr(param, "type_descriptor", None)
    if descriptor is None or not descriptor.is_choice:
        return None
    return tuple(str(c) for c in descriptor.choices)


@pytest.mark.parametrize("path, command", COMMANDS, ids=[" ".join(p) or "sprkd" for p, _ in COMMANDS])
def test_help_shows_flags_without_a_type_and_lists_every_choice(path, command):
    result = sprkd(None, *path, "--help")
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "<bool>" not in text
    for param in command.params:
        choices = _choices(param)
        if choices is not None:
            assert "<" + "|".join(choices) + ">" in text, (param.name, choices)


def _help_texts():
    for path, command in COMMANDS:
        yield " ".join(path) or "sprkd", command.help or ""
        for param in command.params:
            yield f"{' '.join(path)} {param.name}", getattr(param, "help", None) or ""


@pytest.mark.parametrize("where, help_text", list(_help_texts()))
def test_help_text_survives_rich_markup(where, help_text):
    """Every [ of a help text is escaped (\\[), so Rich prints it instead of taking it for a style tag
    (an unescaped pip install 'sprkd[s3]' showed as 'sprkd')."""
    assert Text.from_markup(help_text).plain == help_text.replace("\\[", "["), where


def test_fixed_values_are_choices_of_the_parser():
    """The options whose values are a fixed set are typed as choices (listed above and refused below)."""
    choice_flags = {(" ".join(path), param.opts[0]) for path, command in COMMANDS for param in command.params
                    if _choices(param) is not None}
    for where in [("runs list", "--status"), ("runs list", "--kind"), ("runs export", "--format"),
                  ("runs export", "--status"), ("stats", "--at"), ("compare", "--executor"),
                  ("compare", "--device"), ("distill", "--method"), ("train-teacher", "--optimizer"),
                  ("distill", "--saddle-rule"), *(("hessian-report", f) for f in
                                                  ("--mode", "--dtype", "--hvp", "--weights", "--trace-method"))]:
        assert where in choice_flags, where


@pytest.mark.parametrize("args, needle", [
    (["runs", "list", "--kind", "tutor"], "bad --kind 'tutor'; valid: teacher, student"),
    (["runs", "export", "--format", "xlsx"], "bad --format 'xlsx'; valid: csv, json"),
    (["stats", "--at", "best"], "bad --at 'best'; valid: best-val, final"),
    (["hessian-report", "abc", "--hvp", "fast"], "bad --hvp 'fast'; valid: auto, func, double"),
])
def test_a_value_outside_the_choices_is_refused_by_the_parser(tmp_path, args, needle):
    assert_user_error(sprkd(tmp_path / "runs.db", *args), needle)
    assert not (tmp_path / "runs.db").exists()  # refused before the command ran (or opened the store)
