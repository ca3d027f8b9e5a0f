"""Conventions every command follows (issue 19): ``--version``, flags shown without a value,
one spelling for output options (``--output``/``-o``, ``--out`` kept as an alias), parquet
listed where records are read."""

from __future__ import annotations

from typing import Any, Iterator

import pytest
import typer
from typer.core import TyperOption
from typer.testing import CliRunner

from openautoglm import __version__
from openautoglm.cli import app

WIDE = {"COLUMNS": "250", "NO_COLOR": "1", "TERM": "dumb"}


def commands() -> Iterator[tuple[str, Any]]:
    """Every command and group of the app, with its full name (typer's own click-like classes)."""
    def walk(prefix: str, command: Any) -> Iterator[tuple[str, Any]]:
        subs: dict[str, Any] = getattr(command, "commands", {}) or {}
        yield prefix, command
        for name, sub in subs.items():
            yield from walk(f"{prefix} {name}".strip(), sub)

    yield from walk("", typer.main.get_command(app))


def test_version_option() -> None:
    for flag in ("--version", "-V"):
        result = CliRunner().invoke(app, [flag])
        assert result.exit_code == 0 and result.stdout.strip() == __version__


def test_boolean_options_are_flags_shown_without_a_value() -> None:
    found = 0
    for name, command in commands():
        for param in command.params:
            if isinstance(param, TyperOption) and param.type_descriptor.annotation is bool:
                assert param.is_flag, f"{name} {param.opts}: a boolean option that takes a value"
                found += 1
        result = CliRunner().invoke(app, [*name.split(), "--help"], env=WIDE)
        assert result.exit_code == 0, name
        assert "<bool>" not in result.stdout, f"`openautoglm {name} --help` shows a flag as taking a value"
    assert found > 20


def test_a_flag_still_works() -> None:
    result = CliRunner().invoke(app, ["run", "--help"], env=WIDE)
    assert "--fresh " in result.stdout and "--no-progress" in result.stdout


@pytest.mark.parametrize("name", ["run", "eval", "optimize", "distill", "data clean", "data profile",
                                  "data balance", "automl run", "automl predict", "graph train", "sql eval"])
def test_output_options_are_spelled_output(name: str) -> None:
    command = dict(commands())[name]
    outputs = [p for p in command.params if isinstance(p, TyperOption) and "--output" in p.opts]
    assert len(outputs) == 1, f"{name}: no --output option"
    assert "-o" in outputs[0].opts
    spelled_out = [p for p in command.params if isinstance(p, TyperOption) and "--out" in p.opts]
    assert spelled_out in ([], outputs), f"{name}: --out is not an alias of --output"


def test_out_is_kept_as_an_alias() -> None:
    command = dict(commands())["eval"]
    option = next(p for p in command.params if isinstance(p, TyperOption) and "--output" in p.opts)
    assert "--out" in option.opts


@pytest.mark.parametrize("name", ["run", "eval"])
def test_record_inputs_list_parquet(name: str) -> None:
    result = CliRunner().invoke(app, [name, "--help"], env=WIDE)
    assert ".parquet" in result.stdout
