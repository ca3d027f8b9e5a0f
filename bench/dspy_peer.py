"""DSPy driving the project's embedded model: the peer system of the issue-3 benchmark.

    .venv/bin/python bench/dspy_peer.py --dataset sst2 --n-report 40 --mode predict
    .venv/bin/python bench/dspy_peer.py --dataset sst2 --n-report 30 --mode bootstrap --n-train 40
    .venv/bin/python bench/dspy_peer.py ... --json out/dspy_sst2.json

(needs ``pip install -e .[bench]``: dspy 3.4.1.)

How DSPy reaches the embedded model
    ``EmbeddedDSPy`` loads ``LocalBackend()`` (SmolLM2-135M-Instruct, the same weights and
    code the Open-AutoGLM side uses), serves it with the project's own OpenAI-compatible
    server (``create_openai_app``) under uvicorn on 127.0.0.1 (a free port, a daemon
    thread), and points ``dspy.LM("openai/local", api_base=..., cache=False,
    temperature=0.0, max_tokens=...)`` at it: DSPy runs exactly as it would against a
    vLLM/Ollama endpoint, with no network beyond loopback.  The server answers one request
    at a time (one model, two cores), so evaluation is sequential: DSPy's threaded
    ``Evaluate`` would only queue requests.

What is run
    The signature is ``text -> label`` with ``label: Literal[<the dataset's labels>]`` and a
    one-line task instruction per dataset (``INSTRUCTIONS``).  DSPy's default adapter is
    used unchanged: ``ChatAdapter`` (``[[ ## label ## ]]`` sections) and, when its parse
    fails, DSPy's automatic retry with ``JSONAdapter`` - a second model call.

    * ``predict``: ``dspy.Predict(signature)``, zero-shot, on ``split.report``;
    * ``bootstrap``: ``dspy.BootstrapFewShot(metric=exact match, max_bootstrapped_demos,
      max_labeled_demos, max_errors=len(train)+1)`` compiled on ``split.train`` only (never
      on report rows), then evaluated on ``split.report``.  ``max_errors`` is raised from
      DSPy's default (10) because with this model most bootstrap attempts end in a parse
      error, which would otherwise abort the compile.

Scoring
    An answer DSPy cannot parse into one of the labels (``AdapterParseError`` after both
    adapters) counts as wrong, and is counted in ``unparsed``; any other exception
    likewise, in ``errors``.  ``accuracy_lenient`` is a secondary figure: the label of an
    unparsed answer is taken from its raw text when exactly one label name occurs in it
    (case-insensitive, whole words; a label inside a longer matched label does not count).
    Macro-F1 is over the labels that occur in the gold or the predicted labels (scikit-learn
    when installed).  DSPy gives no confidence, so ECE is ``None`` ("n/a").

Cost
    ``calls`` counts the model generations the server ran (compile + evaluation: every
    adapter retry is a call) and ``seconds`` the wall time of the same; both are also split
    into ``compile_*`` and ``eval_*``.  ``model_seconds`` is the time spent inside the
    backend, so ``seconds - model_seconds`` is DSPy + HTTP + server overhead.  Model load
    and server start are outside these figures (``setup_seconds``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import socket
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Literal, Sequence

ROOT = Path(__file__).resolve().parents[1]
try:
    import openautoglm  # noqa: F401
except ImportError:  # running from a checkout without an install
    sys.path.insert(0, str(ROOT / "src"))
if __package__ in (None, ""):
    # run as a script: put the repository root (for ``bench.datasets``) in place of bench/ itself,
    # so that bench/datasets.py cannot shadow Hugging Face's ``datasets`` for other imports
    if sys.path and Path(sys.path[0] or ".").resolve() == ROOT / "bench":
        sys.path[0] = str(ROOT)
    elif str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))

# LiteLLM (DSPy's fallback engine) would fetch its model-price map from GitHub at import
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from bench.datasets import Split, load  # noqa: E402
from openautoglm.backends.base import Backend, Completion, GenerationRequest, ScoreRequest, ScoreResult  # noqa: E402

DEFAULT_MAX_TOKENS = 32  # a label answer in ChatAdapter format is ~15-20 tokens

INSTRUCTIONS = {
    "sst2": "Classify the sentiment of the movie review.",
    "trec": "Classify what kind of answer the question asks for.",
    "ag_news": "Classify the topic of the news article.",
    "banking77": "Classify the intent of the bank customer's message.",
    "chnsenticorp": "Classify the sentiment of the Chinese review.",
}


# -- the embedded model, counted, behind the project's OpenAI-compatible server ----------------
class CountingBackend(Backend):
    """Delegates to ``inner`` and counts what the server asked of it."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.name, self.model = inner.name, inner.model
        self.can_score, self.max_context = inner.can_score, inner.max_context
        self.supports_json_schema = inner.supports_json_schema
        self._lock = threading.Lock()
        self.counts = {"calls": 0, "score_calls": 0, "prompt_tokens": 0, "completion_tokens": 0,
                       "truncated": 0, "model_seconds": 0.0}

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        t0 = time.perf_counter()
        out = self.inner.generate(requests)
        dt = time.perf_counter() - t0
        with self._lock:
            c = self.counts
            c["calls"] += len(requests)
            c["model_seconds"] += dt
            for comp in out:
                c["prompt_tokens"] += comp.prompt_tokens
                c["completion_tokens"] += comp.completion_tokens
                c["truncated"] += sum(f == "length" for f in comp.finish_reasons)
        return out

    def score_batch(self, requests: Sequence[ScoreRequest]) -> list[ScoreResult]:
        t0 = time.perf_counter()
        out = self.inner.score_batch(requests)
        with self._lock:
            self.counts["score_calls"] += len(requests)
            self.counts["model_seconds"] += time.perf_counter() - t0
        return out

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def identity(self) -> str:
        return self.inner.identity()

    def snapshot(self) -> dict[str, float]:
        with self._lock:
            return dict(self.counts)


class EmbeddedDSPy:
    """``LocalBackend`` served on 127.0.0.1 by ``create_openai_app``, and a ``dspy.LM`` on it.

    Use as a context manager; one instance serves any number of ``run_dspy`` calls (the
    model is loaded once).  Pass ``backend`` to share an already loaded model.
    """

    def __init__(self, backend: Backend | None = None, *, max_tokens: int = DEFAULT_MAX_TOKENS,
                 model_name: str = "local") -> None:
        self._given = backend
        self.max_tokens = max_tokens
        self.model_name = model_name
        self.backend: CountingBackend | None = None
        self.lm: Any = None
        self.setup_seconds = 0.0

    def __enter__(self) -> "EmbeddedDSPy":
        import dspy
        import uvicorn

        from openautoglm.serve.openai_api import create_openai_app

        t0 = time.perf_counter()
        if self._given is None:
            from openautoglm.backends.local import LocalBackend

            self._given = self._owned = LocalBackend()
        else:
            self._owned = None
        self.backend = CountingBackend(self._given)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        port = self._sock.getsockname()[1]
        app = create_openai_app(self.backend, model_name=self.model_name)
        config = uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=2)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        self.base_url = f"http://127.0.0.1:{port}/v1"
        self.lm = dspy.LM(f"openai/{self.model_name}", api_base=self.base_url, api_key="x", cache=False,
                          temperature=0.0, max_tokens=self.max_tokens, num_retries=0)
        self.setup_seconds = time.perf_counter() - t0
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()
        try:
            self.lm.close()
        except Exception:  # noqa: BLE001 - best effort
            pass
        if self._owned is not None:
            self._owned.close()

    @contextmanager
    def measure(self) -> Iterator[dict[str, float]]:
        """Counts and wall time of the block (filled in when it ends)."""
        assert self.backend is not None, "use EmbeddedDSPy as a context manager"
        before, t0 = self.backend.snapshot(), time.perf_counter()
        out: dict[str, float] = {}
        try:
            yield out
        finally:
            after = self.backend.snapshot()
            out.update({k: after[k] - before[k] for k in after})
            out["seconds"] = time.perf_counter() - t0


# -- metrics -----------------------------------------------------------------------------------
def macro_f1(gold: Sequence[str], pred: Sequence[str | None], labels: Sequence[str]) -> float:
    """Macro-F1 over the labels occurring in ``gold`` or (valid) ``pred``; None predictions are wrong."""
    used = [lab for lab in labels if lab in set(gold) or lab in set(pred)]
    if not used:
        return 0.0
    pred_s = [p if p is not None else "\x00unparsed" for p in pred]
    try:
        from sklearn.metrics import f1_score
    except ImportError:
        f1s = []
        for lab in used:
            tp = sum(g == lab and p == lab for g, p in zip(gold, pred_s))
            fp = sum(g != lab and p == lab for g, p in zip(gold, pred_s))
            fn = sum(g == lab and p != lab for g, p in zip(gold, pred_s))
            f1s.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
        return sum(f1s) / len(f1s)
    return float(f1_score(list(gold), pred_s, labels=used, average="macro", zero_division=0))


def lenient_label(raw: str, labels: Sequence[str]) -> str | None:
    """The one label named in ``raw`` (case-insensitive, whole words; labels inside a longer
    matched label are ignored), else None."""
    text = raw.lower()
    found = []
    for lab in labels:
        pattern = re.escape(lab.lower())
        if lab.isascii():
            pattern = rf"(?<![\w]){pattern}(?![\w])"
        if re.search(pattern, text):
            found.append(lab)
    found = [f for f in found if not any(f != g and f.lower() in g.lower() for g in found)]
    return found[0] if len(found) == 1 else None


# -- DSPy program --------------------------------------------------------------------------------
def make_signature(split: Split) -> Any:
    import dspy

    label_type = Literal[tuple(split.labels)]  # type: ignore[valid-type]
    return dspy.Signature(
        {"text": (str, dspy.InputField()), "label": (label_type, dspy.OutputField())},
        INSTRUCTIONS.get(split.name, "Classify the text."),
    )


def _examples(rows: Sequence[dict[str, str]]) -> list[Any]:
    import dspy

    return [dspy.Example(text=r["text"], label=r["label"]).with_inputs("text") for r in rows]


def exact_match(example: Any, prediction: Any, trace: Any = None) -> bool:
    return getattr(prediction, "label", None) == example.label


@contextmanager
def _quiet_dspy_logs() -> Iterator[None]:
    """Silence what we count instead: BootstrapFewShot logs every failed example at ERROR (with
    the whole example), dspy.LM warns on every truncated answer (``truncated``)."""
    logs = [logging.getLogger("dspy.teleprompt.bootstrap"), logging.getLogger("dspy.clients.lm")]
    levels = [log.level for log in logs]
    for log in logs:
        log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for log, level in zip(logs, levels):
            log.setLevel(level)


def evaluate(program: Any, split: Split, lm: Any) -> dict[str, Any]:
    """Run ``program`` on ``split.report`` one row at a time; unparsed/failed answers are wrong."""
    import dspy
    from dspy.utils.exceptions import AdapterParseError

    gold, pred, lenient = [], [], []
    unparsed, errors, samples = 0, 0, []
    with dspy.context(lm=lm):
        for row in split.report:
            gold.append(row["label"])
            try:
                label = program(text=row["text"]).label
                pred.append(label if label in split.labels else None)
                lenient.append(pred[-1])
            except AdapterParseError as exc:
                unparsed += 1
                raw = str(exc.lm_response or "")
                pred.append(None)
                lenient.append(lenient_label(raw, split.labels))
                if len(samples) < 3:
                    samples.append(raw[:160])
            except Exception as exc:  # noqa: BLE001 - a failed call is a wrong answer, counted
                errors += 1
                pred.append(None)
                lenient.append(None)
                if len(samples) < 3:
                    samples.append(f"{type(exc).__name__}: {str(exc)[:140]}")
    n = len(gold)
    return {
        "n": n,
        "accuracy": sum(g == p for g, p in zip(gold, pred)) / n if n else float("nan"),
        "macro_f1": macro_f1(gold, pred, split.labels),
        "accuracy_lenient": sum(g == p for g, p in zip(gold, lenient)) / n if n else float("nan"),
        "unparsed": unparsed,
        "errors": errors,
        "unparsed_samples": samples,
        "predicted": {lab: sum(p == lab for p in pred) for lab in split.labels if lab in pred},
    }


def run_dspy(split: Split, *, mode: str = "predict", max_bootstrapped_demos: int = 4,
             max_labeled_demos: int = 4, peer: EmbeddedDSPy | None = None,
             max_tokens: int = DEFAULT_MAX_TOKENS) -> dict[str, Any]:
    """DSPy ``Predict`` (``mode="predict"``) or ``BootstrapFewShot`` (``mode="bootstrap"``,
    compiled on ``split.train``) on the embedded model, evaluated on ``split.report``.

    Returns accuracy, macro_f1, ece (None: DSPy has no confidence), calls, seconds, n,
    unparsed, and the breakdown described in the module docstring.  ``peer``: a running
    ``EmbeddedDSPy`` to reuse (else one is started and stopped for this call, and
    ``max_tokens`` applies).
    """
    if mode not in ("predict", "bootstrap"):
        raise ValueError(f"mode must be 'predict' or 'bootstrap', not {mode!r}")
    if peer is None:
        with EmbeddedDSPy(max_tokens=max_tokens) as own:
            out = run_dspy(split, mode=mode, max_bootstrapped_demos=max_bootstrapped_demos,
                           max_labeled_demos=max_labeled_demos, peer=own)
            out["setup_seconds"] = own.setup_seconds
            return out

    import dspy

    program = dspy.Predict(make_signature(split))
    compile_info: dict[str, Any] = {"calls": 0, "seconds": 0.0, "model_seconds": 0.0, "completion_tokens": 0,
                                    "truncated": 0}
    extra: dict[str, Any] = {}
    if mode == "bootstrap":
        trainset = _examples(split.train)
        if not trainset:
            raise ValueError("bootstrap needs split.train rows (n_train > 0)")
        optimizer = dspy.BootstrapFewShot(metric=exact_match, max_bootstrapped_demos=max_bootstrapped_demos,
                                          max_labeled_demos=max_labeled_demos, max_errors=len(trainset) + 1)
        with peer.measure() as compile_info, _quiet_dspy_logs(), dspy.context(lm=peer.lm):
            program = optimizer.compile(program, trainset=trainset)
        demos = program.demos
        extra = {
            "n_train": len(trainset),
            "demos": len(demos),
            "bootstrapped_demos": sum(bool(d.get("augmented", False)) for d in demos),
            "compile_errors": optimizer.error_count,  # bootstrap attempts that raised (parse failures)
        }

    with peer.measure() as eval_info, _quiet_dspy_logs():
        result = evaluate(program, split, peer.lm)

    calls = compile_info["calls"] + eval_info["calls"]
    seconds = compile_info["seconds"] + eval_info["seconds"]
    tokens = compile_info["completion_tokens"] + eval_info["completion_tokens"]
    model_s = compile_info["model_seconds"] + eval_info["model_seconds"]
    return {
        "system": "DSPy " + ("Predict" if mode == "predict" else "BootstrapFewShot"),
        "dataset": split.name,
        "mode": mode,
        **{k: result[k] for k in ("n", "accuracy", "macro_f1")},
        "ece": None,
        "calls": calls,
        "seconds": seconds,
        "unparsed": result["unparsed"],
        "errors": result["errors"],
        "accuracy_lenient": result["accuracy_lenient"],
        "eval_calls": eval_info["calls"],
        "eval_seconds": eval_info["seconds"],
        "compile_calls": compile_info["calls"],
        "compile_seconds": compile_info["seconds"],
        **extra,
        "truncated": compile_info["truncated"] + eval_info["truncated"],
        "completion_tokens": tokens,
        "model_seconds": model_s,
        "s_per_call": seconds / calls if calls else None,
        "completion_tok_per_s": tokens / model_s if model_s else None,
        "max_tokens": peer.max_tokens,
        "predicted": result["predicted"],
        "unparsed_samples": result["unparsed_samples"],
        "dspy_version": dspy.__version__,
    }


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="sst2", choices=["sst2", "trec", "ag_news", "banking77", "chnsenticorp"])
    ap.add_argument("--mode", default="predict", choices=["predict", "bootstrap"])
    ap.add_argument("--n-report", type=int, default=40)
    ap.add_argument("--n-train", type=int, default=40)
    ap.add_argument("--n-select", type=int, default=0, help="unused by DSPy; does not change train or report")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-tokens", type=int, default=DEFAULT_MAX_TOKENS)
    ap.add_argument("--max-bootstrapped-demos", type=int, default=4)
    ap.add_argument("--max-labeled-demos", type=int, default=4)
    ap.add_argument("--json", metavar="PATH", help="also write the result as JSON")
    args = ap.parse_args(argv)

    split = load(args.dataset, n_train=args.n_train, n_select=args.n_select, n_report=args.n_report, seed=args.seed)
    with EmbeddedDSPy(max_tokens=args.max_tokens) as peer:
        out = run_dspy(split, mode=args.mode, max_bootstrapped_demos=args.max_bootstrapped_demos,
                       max_labeled_demos=args.max_labeled_demos, peer=peer)
        out["setup_seconds"] = peer.setup_seconds
    out["seed"] = args.seed
    print(json.dumps(out, indent=2, ensure_ascii=False))
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
