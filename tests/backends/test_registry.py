"""Model strings → backends: built-in prefixes, unknown prefixes, entry-point plugins."""

from __future__ import annotations

from typing import Any

import pytest

from openautoglm.backends import registry
from openautoglm.backends.base import Backend
from openautoglm.backends.fake import FakeBackend
from openautoglm.backends.presets import PRESETS
from openautoglm.errors import UnknownModelError


class FakeEntryPoint:
    def __init__(self, name: str, target: Any, value: str = "myplugin.backend:make") -> None:
        self.name = name
        self.value = value
        self._target = target
        self.loaded = 0

    def load(self) -> Any:
        self.loaded += 1
        return self._target


class PluginBackend(Backend):
    name = "plugin"

    def __init__(self, model: str, **options: Any) -> None:
        self.model = model
        self.options = options


def test_fake_prefix_and_model_name() -> None:
    b = registry.create_backend("fake")
    assert isinstance(b, FakeBackend) and b.model == "fake"
    b = registry.create_backend("FAKE: tiny ")
    assert isinstance(b, FakeBackend) and b.model == "tiny"


def test_mapping_spec_passes_options() -> None:
    b = registry.create_backend({"model": "fake:x", "responses": ["hi"], "can_score": False})
    assert isinstance(b, FakeBackend)
    assert b.model == "x" and b.responses == ["hi"] and b.can_score is False


def test_backend_instance_passes_through() -> None:
    b = FakeBackend()
    assert registry.create_backend(b) is b


def test_env_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAUTOGLM_MODEL", "fake:from-env")
    b = registry.create_backend(None)
    assert isinstance(b, FakeBackend) and b.model == "from-env"


def test_non_string_model_rejected() -> None:
    with pytest.raises(UnknownModelError, match="must be a string"):
        registry.create_backend({"model": 42})


def test_unknown_prefix_names_it_and_lists_known_prefixes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_entry_points", lambda: {})
    with pytest.raises(UnknownModelError) as info:
        registry.create_backend("nope:x")
    err = info.value
    assert "'nope:x'" in str(err) and "'nope'" in str(err)
    assert err.hint is not None
    for prefix in ("local", "openai", "fake", *PRESETS):
        assert prefix in err.hint
    assert "openautoglm models" in err.hint


def test_entry_point_plugin_is_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    ep = FakeEntryPoint("myplug", PluginBackend)
    monkeypatch.setattr(registry, "_entry_points", lambda: {"myplug": ep})
    b = registry.create_backend("myplug:big-model", temperature_hack=1)
    assert isinstance(b, PluginBackend)
    assert b.model == "big-model" and b.options == {"temperature_hack": 1}
    assert ep.loaded == 1


def test_entry_points_are_not_consulted_for_builtin_prefixes(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom() -> dict[str, Any]:
        raise AssertionError("entry points loaded for a built-in prefix")

    monkeypatch.setattr(registry, "_entry_points", boom)
    assert isinstance(registry.create_backend("fake"), FakeBackend)


def test_plugin_must_return_a_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    ep = FakeEntryPoint("bad", lambda model, **kw: {"not": "a backend"})
    monkeypatch.setattr(registry, "_entry_points", lambda: {"bad": ep})
    with pytest.raises(UnknownModelError) as info:
        registry.create_backend("bad:m")
    assert "plugin 'bad' returned dict" in str(info.value)
    assert "subclass openautoglm.backends.base.Backend" in (info.value.hint or "")


def test_unknown_prefix_lists_installed_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_entry_points", lambda: {"zzplug": FakeEntryPoint("zzplug", PluginBackend)})
    with pytest.raises(UnknownModelError) as info:
        registry.create_backend("nope")
    assert "zzplug" in (info.value.hint or "")


def test_list_models_reports_presets_plugins_and_fake(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_entry_points",
                        lambda: {"myplug": FakeEntryPoint("myplug", PluginBackend, value="pkg.mod:factory")})
    monkeypatch.setattr(registry, "_local_row", lambda: {"model": "local", "backend": "local", "available": True,
                                                         "detail": "stub"})
    rows = registry.list_models(env={"DEEPSEEK_API_KEY": "k"})
    by_model = {r["model"]: r for r in rows}
    assert rows[0]["model"] == "local"
    assert by_model["zhipu:glm-4-flash"]["available"] is False
    assert "ZHIPUAI_API_KEY" in by_model["zhipu:glm-4-flash"]["detail"]
    assert by_model["deepseek:deepseek-chat"]["available"] is True
    assert by_model["myplug:<model>"]["backend"] == "plugin pkg.mod:factory"
    assert by_model["fake"]["available"] is True
    assert len([r for r in rows if r["backend"] == "openai-compatible"]) == len(PRESETS)


def test_split_model_string() -> None:
    assert registry.split_model_string(" Zhipu : glm-4 ") == ("zhipu", "glm-4")
    assert registry.split_model_string("local") == ("local", "")
    assert registry.split_model_string("ollama:qwen2:7b") == ("ollama", "qwen2:7b")
