"""A learned label head: a linear classifier over features of the input, fitted on labelled examples.

A label task with ``head:`` fits, on first use, a logistic regression on its ``pool`` of
labelled examples and mixes its distribution with the model's label scores
(``p ∝ p_LM^(1-w) · p_head^w``; ``weight: 1`` uses the head alone and skips label scoring).
Features are either

* ``model``: the backend's hidden states of some middle blocks for the input followed by
  the task's answer cue, averaged over its tokens or (``pooling: last``) at its last token,
  where the model is about to answer (a linear probe of the same model that scores the
  labels; needs a backend that exposes hidden states, i.e. the local one), or
* ``tfidf``: word 1–2-gram TF-IDF of the input (character 1–3-grams for Chinese,
  Japanese and Korean text): no model at all.

The pool is part of the task's YAML, as with ``retrieval:``, so an optimized task stays
one self-contained file; the fit is deterministic and takes seconds.

A head can also be fitted once and shipped with the package (``shipped: NAME`` instead of
``pool``): ``core/heads/NAME.json`` holds its coefficients, the model it was fitted for,
its features and the data it was fitted on (``scripts/fit_preset_heads.py`` writes it).
It applies only on that model; on another backend the task falls back to its label scores
and the result's ``method`` says why (``+head-skipped(...)``).  The ``sentiment.v1``
preset attaches one to Chinese tasks (see :mod:`.presets`).
"""

from __future__ import annotations

import base64
import json
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal, Sequence

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..errors import ConfigError, OpenAutoGLMError

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

#: probability floor for labels the pool lacks (keeps log-mixing finite)
HEAD_FLOOR = 1e-3
#: default blocks, as fractions of the model's depth (measured best on SST-2 and TREC)
DEFAULT_DEPTHS = (0.6, 0.7)
DEFAULT_C = {"model": 0.01, "tfidf": 10.0}
#: the heads shipped with the package (``NAME.json``)
SHIPPED_DIR = Path(__file__).with_name("heads")
#: fields every shipped head file has
SHIPPED_FIELDS = ("name", "format", "model", "model_label", "labels", "classes", "features", "layers", "pooling", "template",
                  "cue", "C", "fit", "coef", "intercept", "dtype", "shape")


class HeadNotApplicable(OpenAutoGLMError):
    """A shipped head was fitted for another model (or labels) than the task runs with."""


class HeadConfig(BaseModel):
    """``head:`` block of a label task."""

    model_config = ConfigDict(extra="forbid")

    #: labelled examples to fit on (input fields + ``output``/``label``)
    pool: list[dict[str, Any]] | None = Field(default=None, min_length=2)
    #: instead of a pool: a head fitted beforehand and shipped with the package (``core/heads/NAME.json``)
    shipped: str | None = None
    features: Literal["model", "tfidf"] = "model"
    #: model blocks whose token-averaged hidden states are the features (default: at 60 % and 70 % depth)
    layers: list[int] | None = None
    #: model features: ``mean`` over the input's tokens, or ``last``: the state at the end of input + answer cue
    pooling: Literal["mean", "last"] = "mean"
    #: inverse regularisation strength of the logistic regression (default 0.01 model, 10 tfidf)
    C: float | None = Field(default=None, gt=0)
    #: share of the head in the mixed distribution (1: the head alone, no label scoring)
    weight: float = Field(default=1.0, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _pool_or_shipped(self) -> "HeadConfig":
        if (self.pool is None) == (self.shipped is None):
            raise ValueError("a head needs either `pool` (examples to fit on) or `shipped` (a head shipped "
                             "with the package), not both")
        if self.shipped is not None:
            own = self.model_fields_set & {"features", "layers", "pooling", "C"}
            if own:
                raise ValueError(f"a shipped head brings its own {', '.join(sorted(own))}; leave them out")
            try:
                read_shipped(self.shipped)
            except ConfigError as exc:
                raise ValueError(exc.message) from None
        return self


def default_layers(num_layers: int, depths: Sequence[float] = DEFAULT_DEPTHS) -> list[int]:
    """The blocks at ``depths`` (fractions of the model's depth), without repeats."""
    return sorted({min(num_layers - 1, round(d * num_layers)) for d in depths})


def describe_features(features: str, layers: Sequence[int] | None, pooling: str = "mean") -> str:
    """``layers 15,18`` (``, last token`` when so pooled) for model features, else the kind."""
    if features != "model" or not layers:
        return features
    return f"layers {','.join(map(str, layers))}" + (", last token" if pooling == "last" else "")


def model_features(backend: Any, texts: Sequence[str], layers: Sequence[int], pooling: str = "mean") -> "np.ndarray":
    """``[N, len(layers) * H]``: the backend's pooled hidden states of ``layers``, side by side."""
    if not getattr(backend, "can_featurize", False):
        raise ConfigError(f"backend {getattr(backend, 'name', backend)!r} does not expose hidden states",
                          field="head.features", hint="use features: tfidf, or the local backend")
    feats = backend.features(list(texts), list(layers), pooling)
    return feats.reshape(len(texts), -1)


class TfidfFeatures:
    """Word 1–2-gram TF-IDF (character 1–3-grams for CJK text), fitted on the pool."""

    def __init__(self, texts: Sequence[str]) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer

        from ..embeddings import CJK_THRESHOLD, cjk_share

        if cjk_share(texts) > CJK_THRESHOLD:
            self.vectorizer = TfidfVectorizer(analyzer="char", ngram_range=(1, 3), sublinear_tf=True, min_df=2)
        else:
            self.vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)
        try:
            self.vectorizer.fit(texts)
        except ValueError:  # min_df=2 left no vocabulary (tiny pool)
            self.vectorizer.set_params(min_df=1)
            self.vectorizer.fit(texts)

    def __call__(self, texts: Sequence[str]) -> Any:
        return self.vectorizer.transform(list(texts))


class LinearHead:
    """Standardised (dense features) logistic regression; ``proba`` follows the task's label order."""

    def __init__(self, features: Any, gold: Sequence[str], labels: Sequence[str], C: float) -> None:
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler

        self.labels = list(labels)
        self.scaler = StandardScaler().fit(features) if not _is_sparse(features) else None
        x = self.scaler.transform(features) if self.scaler is not None else features
        self.model = LogisticRegression(C=C, max_iter=2000).fit(x, list(gold))

    def refit(self, features: Any, gold: Sequence[str], C: float) -> "LinearHead":
        """This head fitted again on the same data with ``C``, starting from its weights
        (a neighbouring ``C`` converges in a fraction of the iterations)."""
        import copy

        clone = copy.copy(self)
        clone.model = copy.deepcopy(self.model).set_params(C=C, warm_start=True)
        x = self.scaler.transform(features) if self.scaler is not None else features
        clone.model.fit(x, list(gold))
        return clone

    def proba(self, features: Any) -> list[list[float]]:
        x = self.scaler.transform(features) if self.scaler is not None else features
        probs = self.model.predict_proba(x)
        column = {lab: j for j, lab in enumerate(self.model.classes_)}
        n = len(self.labels)
        out = []
        for row in probs:
            full = [float(row[column[lab]]) if lab in column else 0.0 for lab in self.labels]
            out.append([(p + HEAD_FLOOR) / (1 + HEAD_FLOOR * n) for p in full])
        return out


class LabelHead:
    """A task's head, fitted on its pool for one backend."""

    def __init__(self, config: HeadConfig, labels: Sequence[str], render: Callable[[dict[str, Any]], str],
                 answer_of: Callable[[dict[str, Any]], str], backend: Any) -> None:
        pairs = [(render(ex), answer_of(ex)) for ex in config.pool]
        pairs = [(text, gold) for text, gold in pairs if gold in labels]
        if len({gold for _, gold in pairs}) < 2:
            raise ConfigError("head.pool needs examples of at least two of the task's labels", field="head.pool",
                              hint="give each pool example an 'output' that is one of the task's labels")
        self.config = config
        texts = [text for text, _ in pairs]
        self.layers: list[int] = []
        self.tfidf: TfidfFeatures | None = None
        if config.features == "model":
            self.layers = config.layers or default_layers(getattr(backend, "num_layers", 0) or 1)
        else:
            self.tfidf = TfidfFeatures(texts)
        C = config.C or DEFAULT_C[config.features]
        self.head = LinearHead(self.featurize(backend, texts), [gold for _, gold in pairs], labels, C)

    def featurize(self, backend: Any, texts: Sequence[str]) -> Any:
        if self.tfidf is not None:
            return self.tfidf(texts)
        return model_features(backend, texts, self.layers, self.config.pooling)

    def describe(self) -> str:
        return f"head({describe_features(self.config.features, self.layers, self.config.pooling)})"

    def predict(self, backend: Any, texts: Sequence[str]) -> list[list[float]]:
        """Label distributions for ``texts`` (``backend``: the one whose features it was fitted on)."""
        return self.head.proba(self.featurize(backend, texts)) if texts else []


def _is_sparse(x: Any) -> bool:
    return hasattr(x, "tocsr")


# -- shipped heads ------------------------------------------------------------------------------
def shipped_names() -> list[str]:
    """The names of the heads shipped with the package."""
    return sorted(p.stem for p in SHIPPED_DIR.glob("*.json"))


@lru_cache(maxsize=None)
def read_shipped(name: str) -> dict[str, Any]:
    """The shipped head ``name``'s file as stored (``coef`` still encoded), its fields checked:
    enough to validate and describe a task without numpy."""
    path = SHIPPED_DIR / f"{name}.json"
    if "/" in name or "\\" in name or not path.is_file():
        raise ConfigError(f"no shipped head {name!r}", field="head.shipped",
                          hint=f"known: {', '.join(shipped_names()) or 'none'}")
    data = json.loads(path.read_text(encoding="utf-8"))
    missing = [f for f in SHIPPED_FIELDS if f not in data]
    if missing:
        raise ConfigError(f"shipped head {name!r} lacks {', '.join(missing)}", field="head.shipped")
    return data


@lru_cache(maxsize=None)
def load_shipped(name: str) -> dict[str, Any]:
    """The shipped head ``name``'s file with ``coef`` decoded (a read-only ``[classes, D]`` array)."""
    import numpy as np

    data = read_shipped(name)
    rows, cols = data["shape"]
    coef = np.frombuffer(base64.b64decode(data["coef"]), dtype=data["dtype"]).astype(np.float64)
    if coef.size != rows * cols or len(data["intercept"]) != rows:
        raise ConfigError(f"shipped head {name!r}: coef/intercept do not match shape {data['shape']}",
                          field="head.shipped")
    coef = coef.reshape(rows, cols)
    coef.setflags(write=False)
    return {**data, "coef": coef}


def describe_fit(fit: dict[str, Any]) -> str:
    """``fitted on ChnSentiCorp train 1000 rows``."""
    return f"fitted on {fit.get('dataset', '?')} {fit.get('split', '?')} {fit.get('rows', '?')} rows"


class ShippedHead:
    """A head shipped with the package: a fixed linear map of the model's hidden states,
    usable only with the model (and labels) it was fitted for."""

    def __init__(self, config: HeadConfig, labels: Sequence[str], backend: Any) -> None:
        import numpy as np

        assert config.shipped is not None
        self.config = config
        self.data = data = load_shipped(config.shipped)
        if not applies_to(data, backend):
            raise HeadNotApplicable(f"fitted for {data['model']}, not "
                                    f"{getattr(backend, 'name', '?')}:{getattr(backend, 'model', '?')}")
        if sorted(labels) != sorted(data["labels"]):
            raise HeadNotApplicable(f"fitted for labels {'/'.join(data['labels'])}")
        self.labels = list(labels)
        self.layers: list[int] = list(data["layers"])
        self.pooling: str = data["pooling"]
        self.coef = data["coef"]
        self.intercept = np.asarray(data["intercept"], dtype=np.float64)
        self.classes: list[str] = list(data["classes"])

    def featurize(self, backend: Any, texts: Sequence[str]) -> Any:
        return model_features(backend, texts, self.layers, self.pooling)

    def describe(self) -> str:
        return (f"head({self.config.shipped}, {describe_features('model', self.layers, self.pooling)}, "
                f"{describe_fit(self.data['fit'])})")

    def predict(self, backend: Any, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        return self.proba(self.featurize(backend, texts))

    def proba(self, features: Any) -> list[list[float]]:
        """Label distributions (the task's label order) for ``features`` ``[N, D]``."""
        import numpy as np

        z = np.asarray(features, dtype=np.float64) @ self.coef.T + self.intercept
        if z.shape[1] == 1:  # binary: the probability of classes[1]
            p1 = 1.0 / (1.0 + np.exp(-z[:, 0]))
            probs = np.stack([1.0 - p1, p1], axis=1)
        else:
            e = np.exp(z - z.max(axis=1, keepdims=True))
            probs = e / e.sum(axis=1, keepdims=True)
        column = {lab: j for j, lab in enumerate(self.classes)}
        n = len(self.labels)
        return [[(float(row[column[lab]]) + HEAD_FLOOR) / (1 + HEAD_FLOOR * n) for lab in self.labels]
                for row in probs]


def backend_model(backend: Any) -> str:
    """The model a backend runs, as its model files name it (the embedded models: the same
    label whatever alias named them), else its ``model``."""
    files = getattr(backend, "files", None)
    return str(getattr(files, "label", None) or getattr(backend, "model", None) or "?")


def applies_to(data: dict[str, Any], backend: Any) -> bool:
    """Whether the shipped head ``data`` was fitted for ``backend``'s model."""
    return (getattr(backend, "name", None) == str(data["model"]).split(":", 1)[0]
            and backend_model(backend) == data["model_label"])
