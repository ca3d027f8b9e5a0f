"""``openautoglm graph train``: node classification over seeds, with the learned graph exported.

``register(app)`` adds the ``graph`` group; the subsystem (torch, numpy) is imported
inside the command so ``openautoglm --help`` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, List, Optional

import typer


def _parse_params(items: list[str]) -> dict[str, Any]:
    from ..errors import ConfigError

    params: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--param {item!r} is not KEY=VALUE", field="--param", hint="e.g. --param lam=0.8")
        key, raw = item.split("=", 1)
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        params[key.strip()] = value
    return params


def train_command(
    dataset: str = typer.Option(..., "--dataset", "-d", help="cora, citeseer, a graph folder (nodes.csv [+ edges.csv]) "
                                                           "or a nodes CSV"),
    model: str = typer.Option("adaptive", "--model", "-m", help="gcn, gat, sage or adaptive"),
    seeds: int = typer.Option(10, "--seeds", help="number of seeds (0..N-1); mean ± std is reported"),
    no_input_graph: bool = typer.Option(False, "--no-input-graph",
                                        help="ignore the input edges: start from a feature kNN graph"),
    out: Optional[Path] = typer.Option(None, "--output", "-o", "--out",
                                       help="folder for results.json, learned_edges.csv and graph_comparison.png"),
    param: List[str] = typer.Option([], "--param", "-p", help="override a hyper-parameter: KEY=VALUE (repeatable)"),
    knn_k: int = typer.Option(10, "--knn-k", help="neighbours of the kNN starting graph when there are no edges"),
    data_root: Optional[Path] = typer.Option(None, "--root", "--data-root",
                                             help="folder with the Planetoid ind.* files (default: $OPENAUTOGLM_DATA/"
                                             "planetoid, else the user data folder's planetoid/)"),
    threads: str = typer.Option("auto", "--threads", help="torch threads (auto: 2, or 1 on a busy CPU)"),
    no_progress: bool = typer.Option(False, "--no-progress", help="hide the progress bar"),
) -> None:
    """Train a GNN over several seeds; report test accuracy (mean ± std) and time per run."""
    from rich.console import Console
    from rich.table import Table

    from .data import load_dataset
    from .train import train_seeds

    err = Console(stderr=True, highlight=False)
    params = _parse_params(param)
    params.setdefault("threads", threads)
    graph = load_dataset(dataset, data_root=data_root)
    input_graph = None if graph.edge_index is None or no_input_graph else (graph.edge_index, graph.edge_weight)
    if no_input_graph:
        graph = graph.without_graph()
    err.print(graph.summary())
    result = train_seeds(graph, model, seeds, params=params, knn_k=knn_k, progress=not no_progress,
                         export_graph=out is not None)
    table = Table(title=f"{model} on {graph.name}, {len(result.runs)} seed(s)")
    for col in ("test acc", "val acc", "s / run (mean)", "s / run (max)", "epochs (mean)"):
        table.add_column(col, justify="right")
    table.add_row(f"{100 * result.test_mean:.1f} ± {100 * result.test_std:.1f}", f"{100 * result.val_mean:.1f}",
                  f"{result.seconds_mean:.1f}", f"{result.seconds_max:.1f}",
                  f"{sum(r.epochs for r in result.runs) / len(result.runs):.0f}")
    Console(highlight=False).print(table)
    if out is not None:
        _write_outputs(out, graph, result, input_graph, knn_k, err)


def _write_outputs(out: Path, graph: Any, result: Any, input_graph: Any, knn_k: int, err: Any) -> None:
    from .analysis import export_edges, graph_stats, plot_graph_comparison
    from .data import knn_graph

    out.mkdir(parents=True, exist_ok=True)
    summary = result.to_dict()
    if input_graph is None:  # what training started from: the feature kNN graph
        input_graph = (knn_graph(graph.x, knn_k), None)
        summary["input_graph"] = f"feature kNN graph (k={knn_k})"
    summary["input_graph_stats"] = graph_stats(input_graph[0], graph.y, input_graph[1])
    learned = result.runs[0].learned_edges
    if learned is not None:
        summary["learned_graph_stats"] = graph_stats(learned[0], graph.y, learned[1])
        export_edges(out / "learned_edges.csv", learned[0], learned[1], graph.node_ids)
        plot_graph_comparison(out / "graph_comparison.png", input_graph, learned, graph.y,
                              title=f"{graph.name}: input vs learned graph (seed {result.runs[0].seed})")
    (out / "results.json").write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
    err.print(f"wrote {out / 'results.json'}" + ("" if learned is None else
                                                 f", {out / 'learned_edges.csv'}, {out / 'graph_comparison.png'}"))


def register(app: typer.Typer) -> None:
    """Add the ``graph`` command group to the main app."""
    group = typer.Typer(help="Node classification with GNNs and adaptive graph structure learning.",
                        no_args_is_help=True)
    group.command("train")(train_command)
    app.add_typer(group, name="graph")
