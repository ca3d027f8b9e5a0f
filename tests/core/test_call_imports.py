"""``call:`` steps: imported when the pipeline is built, before any model loads, and looked up in
the pipeline file's folder (trusted YAML only) without leaving that folder on ``sys.path``."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from openautoglm.cli import app
from openautoglm.core.config import parse_pipeline_yaml
from openautoglm.core.pipeline import Pipeline
from openautoglm.core.policy import LoadPolicy
from openautoglm.errors import ConfigError

#: what happened, in order: the user module's import and each model load append here
EVENTS: list[str] = []

ROUTING = '''\
from tests.core import test_call_imports as recorder

recorder.EVENTS.append("import")


def route(context):
    return {"queue": "praise" if context["sentiment"]["label"] == "positive" else "support"}
'''

PIPELINE = """\
name: triage
model: fake
steps:
  - name: sentiment
    task: {{template: "Review: {{text}}", labels: [positive, negative], format: text}}
  - name: route
    call: {package}.routing:route
"""


def project(tmp_path: Path) -> tuple[Path, str]:
    """A pipeline beside its own package (a fresh name: imports are cached per process)."""
    package = f"mypkg_{uuid.uuid4().hex[:8]}"
    (tmp_path / package).mkdir()
    (tmp_path / package / "__init__.py").write_text("", encoding="utf-8")
    (tmp_path / package / "routing.py").write_text(ROUTING, encoding="utf-8")
    path = tmp_path / "pipeline.yaml"
    path.write_text(PIPELINE.format(package=package), encoding="utf-8")
    return path, package


def test_a_call_beside_the_pipeline_imports_without_pythonpath(tmp_path: Path) -> None:
    path, _ = project(tmp_path)
    before = list(sys.path)
    pipe = Pipeline.from_yaml(path, store=False)
    assert sys.path == before  # the folder was on the path for the import only
    assert pipe.run(text="a negative film")["queue"] == "support"


def test_the_run_command_finds_it_from_another_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "proj").mkdir()
    path, _ = project(tmp_path / "proj")
    (tmp_path / "in.csv").write_text("text\na positive film\n", encoding="utf-8")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    result = CliRunner().invoke(app, ["run", str(path), "-i", str(tmp_path / "in.csv"), "--store", "s.db",
                                      "--no-progress", "-o", "out.jsonl"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert '"queue": "praise"' in (elsewhere / "out.jsonl").read_text(encoding="utf-8")


def test_the_call_is_imported_before_any_model_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from openautoglm.backends import registry
    from openautoglm.backends.fake import FakeBackend

    def loading(spec, **options):  # type: ignore[no-untyped-def]
        EVENTS.append("model")
        return FakeBackend()

    monkeypatch.setattr(registry, "create_backend", loading)
    EVENTS.clear()
    path, _ = project(tmp_path)
    pipe = Pipeline.from_yaml(path, store=False)
    assert EVENTS == ["import"]  # built: the module is imported, no model is loaded yet
    pipe.run(text="a positive film")
    assert EVENTS == ["import", "model"]


def test_an_untrusted_pipeline_never_gets_its_folder_on_the_path(tmp_path: Path) -> None:
    path, package = project(tmp_path)
    config = parse_pipeline_yaml(path.read_text(encoding="utf-8"), source=str(path))
    policy = LoadPolicy.untrusted(tmp_path, [f"{package}.routing:route"])
    with pytest.raises(ConfigError, match="cannot import"):
        Pipeline.from_config(config, source=str(path), policy=policy, store=False)
    assert f"{package}.routing" not in sys.modules


def test_an_import_error_says_where_it_looked(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(PIPELINE.format(package="no_such_pkg_19"), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        Pipeline.from_yaml(path, store=False)
    assert f"the pipeline's folder ({tmp_path.resolve()})" in str(info.value)
