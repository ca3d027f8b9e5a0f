from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from openautoglm.errors import OpenAutoGLMError
from openautoglm.graph.cli import register

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "graph"


def _app() -> typer.Typer:
    app = typer.Typer()
    register(app)

    @app.callback()
    def main() -> None:  # a group, like the real CLI
        pass

    return app


@pytest.mark.slow
def test_graph_train_writes_results_learned_graph_and_plot(tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(_app(), ["graph", "train", "--dataset", str(EXAMPLE), "--model", "adaptive",
                                         "--seeds", "2", "--no-progress", "--out", str(out),
                                         "--param", "epochs=60", "--param", "patience=30"])
    assert result.exit_code == 0, result.output
    assert "adaptive on graph, 2 seed(s)" in result.output and "±" in result.output
    summary = json.loads((out / "results.json").read_text())
    assert summary["seeds"] == [0, 1] and 0.5 < summary["test_acc_mean"] <= 1.0
    assert summary["learned_graph_stats"]["edges"] > 0 and 0 <= summary["learned_graph_stats"]["homophily"] <= 1
    assert summary["input_graph_stats"]["edges"] == 830
    edges = (out / "learned_edges.csv").read_text().splitlines()
    assert edges[0] == "source,target,weight" and edges[1].startswith("n")  # node ids, not indices
    assert (out / "graph_comparison.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_graph_train_without_input_graph(tmp_path):
    out = tmp_path / "nog"
    result = CliRunner().invoke(_app(), ["graph", "train", "-d", str(EXAMPLE / "nodes.csv"), "-m", "gcn", "--seeds", "1",
                                         "--no-input-graph", "--no-progress", "--out", str(out),
                                         "--param", "epochs=40"])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "results.json").read_text())
    assert summary["input_graph"].startswith("feature kNN graph") and "learned_graph_stats" not in summary


def test_graph_train_errors_are_clean(tmp_path):
    app = _app()
    result = CliRunner().invoke(app, ["graph", "train", "--dataset", str(tmp_path / "missing"), "--seeds", "1"])
    assert isinstance(result.exception, OpenAutoGLMError) and "neither a known dataset" in str(result.exception)
    result = CliRunner().invoke(app, ["graph", "train", "--dataset", str(EXAMPLE), "--param", "oops"])
    assert isinstance(result.exception, OpenAutoGLMError) and "KEY=VALUE" in str(result.exception)
    result = CliRunner().invoke(app, ["graph", "train", "--dataset", str(EXAMPLE), "--model", "gin"])
    assert isinstance(result.exception, OpenAutoGLMError) and "unknown model" in str(result.exception)
