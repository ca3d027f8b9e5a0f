"""Named presets for OpenAI-compatible endpoints.

A model string such as ``zhipu:glm-4-flash`` names a preset (``zhipu``) and a
model.  The preset supplies the base URL and the environment variable that
holds the API key; both can be overridden per backend.

Each preset also names the wire methods its servers take a decoding constraint by
(``guided``, best first; see :mod:`openautoglm.backends.openai_guided`).  An endpoint
without a preset (a custom ``base_url``) is probed instead.

Nothing here touches the network: :func:`availability` only inspects the
environment.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Mapping
from urllib.parse import urlparse

#: environment variable that overrides a preset's base URL: ``OPENAUTOGLM_<NAME>_BASE_URL``
BASE_URL_ENV_TEMPLATE = "OPENAUTOGLM_{name}_BASE_URL"


@dataclass(frozen=True)
class EndpointPreset:
    """How to reach one family of OpenAI-compatible endpoints."""

    name: str
    base_url: str
    api_key_env: str | None
    default_model: str | None
    description: str
    api_key_required: bool
    #: how its servers take a constraint, best first (names in ``openai_guided.WIRE_METHODS``):
    #: ``response_format`` (OpenAI's json_schema), ``json_object`` (JSON mode: valid JSON, the
    #: schema not enforced), ``structured_outputs`` / ``guided`` (vLLM, new / before 0.12),
    #: ``llamacpp`` (llama.cpp's ``json_schema`` and GBNF ``grammar``)
    guided: tuple[str, ...] = ()
    #: a preset (e.g. ``"vllm"``) whose server takes over when the model is a repository id
    #: (``THUDM/glm-4-9b-chat``: served by vLLM, never a hosted model name) or the base URL is
    #: overridden (``base_url=`` / ``OPENAUTOGLM_<NAME>_BASE_URL``): see :func:`route`
    self_hosted: str | None = None

    @property
    def is_local(self) -> bool:
        """Whether the endpoint is a server on this machine (vLLM, Ollama, llama.cpp)."""
        host = urlparse(self.base_url).hostname or ""
        return host in {"localhost", "127.0.0.1", "::1"}

    @property
    def base_url_env(self) -> str:
        """The environment variable that overrides :attr:`base_url`."""
        return BASE_URL_ENV_TEMPLATE.format(name=self.name.upper())

    def resolved_base_url(self, env: Mapping[str, str] | None = None) -> str:
        """:attr:`base_url`, unless ``OPENAUTOGLM_<NAME>_BASE_URL`` is set."""
        env = os.environ if env is None else env
        return env.get(self.base_url_env) or self.base_url


_ZHIPU = EndpointPreset(
    name="zhipu",
    base_url="https://open.bigmodel.cn/api/paas/v4",
    api_key_env="ZHIPUAI_API_KEY",
    default_model="glm-4-flash",
    description="Zhipu AI (GLM models, BigModel open platform)",
    api_key_required=True,
    guided=("json_object",),
)

PRESETS: dict[str, EndpointPreset] = {
    p.name: p
    for p in (
        EndpointPreset(
            name="openai",
            base_url="https://api.openai.com/v1",
            api_key_env="OPENAI_API_KEY",
            default_model="gpt-4o-mini",
            description="OpenAI API",
            api_key_required=True,
            guided=("response_format", "json_object"),
        ),
        _ZHIPU,
        # the same hosted endpoint under the name ChatGLM users type, which can also name a
        # ChatGLM of their own served by vLLM
        replace(_ZHIPU, name="chatglm", self_hosted="vllm",
                description="ChatGLM: Zhipu AI's hosted GLM models, or your own ChatGLM on vLLM "
                "(a repository id such as 'chatglm:THUDM/glm-4-9b-chat', or OPENAUTOGLM_CHATGLM_BASE_URL)"),
        EndpointPreset(
            name="baichuan",
            base_url="https://api.baichuan-ai.com/v1",
            api_key_env="BAICHUAN_API_KEY",
            default_model="Baichuan4-Turbo",
            description="Baichuan AI (Baichuan models), OpenAI-compatible API",
            api_key_required=True,
            guided=("json_object",),
        ),
        EndpointPreset(
            name="qwen",
            base_url="https://dashscope.aliyuncs.com/compatible-mode/v1",
            api_key_env="DASHSCOPE_API_KEY",
            default_model="qwen-plus",
            description="Alibaba Cloud DashScope (Qwen models), OpenAI-compatible mode",
            api_key_required=True,
            guided=("response_format", "json_object"),
        ),
        EndpointPreset(
            name="deepseek",
            base_url="https://api.deepseek.com/v1",
            api_key_env="DEEPSEEK_API_KEY",
            default_model="deepseek-chat",
            description="DeepSeek API",
            api_key_required=True,
            guided=("json_object",),
        ),
        EndpointPreset(
            name="vllm",
            base_url="http://localhost:8000/v1",
            api_key_env="VLLM_API_KEY",
            default_model=None,
            description="a local vLLM server (`vllm serve <model>`); key only if started with --api-key",
            api_key_required=False,
            guided=("response_format", "structured_outputs", "guided"),
        ),
        EndpointPreset(
            name="ollama",
            base_url="http://localhost:11434/v1",
            api_key_env=None,
            default_model=None,
            description="a local Ollama server (`ollama serve`)",
            api_key_required=False,
            guided=("response_format", "json_object"),
        ),
        EndpointPreset(
            name="llamacpp",
            base_url="http://localhost:8080/v1",
            api_key_env=None,
            default_model=None,
            description="a local llama.cpp server (`llama-server -m model.gguf`)",
            api_key_required=False,
            guided=("response_format", "llamacpp"),
        ),
    )
}

#: alternative names accepted by :func:`preset_for`
ALIASES: dict[str, str] = {
    "glm": "zhipu",
    "zhipuai": "zhipu",
    "bigmodel": "zhipu",
    "dashscope": "qwen",
    "tongyi": "qwen",
    "baichuan-ai": "baichuan",
    "llama.cpp": "llamacpp",
    "llama-cpp": "llamacpp",
    "llama_cpp": "llamacpp",
}


def preset_for(prefix: str) -> EndpointPreset | None:
    """The preset named ``prefix`` (case-insensitive, aliases allowed), or ``None``."""
    key = prefix.strip().lower()
    return PRESETS.get(ALIASES.get(key, key))


def route(
    preset: EndpointPreset, model: str, base_url: str | None = None, env: Mapping[str, str] | None = None
) -> tuple[EndpointPreset, str | None]:
    """The preset that serves ``model`` and the base URL to use (``None``: the preset's own).

    A preset with :attr:`~EndpointPreset.self_hosted` hands a model over to that preset's
    server when the model is a repository id (it contains ``/``) or the base URL is
    overridden; the URL is then the override, else the self-hosted preset's.  Others
    route to themselves.
    """
    env = os.environ if env is None else env
    if preset.self_hosted is None:
        return preset, base_url
    override = base_url or env.get(preset.base_url_env)
    if not override and "/" not in model:
        return preset, base_url
    hosted = PRESETS[preset.self_hosted]
    return hosted, override or hosted.resolved_base_url(env)


def missing_key_message(preset: EndpointPreset) -> str:
    """The one-line error for a hosted preset whose key is not set."""
    host = urlparse(preset.base_url).hostname
    return f"no API key for {preset.name} ({host}): set {preset.api_key_env} or pass api_key=..."


def api_key_from_env(preset: EndpointPreset, env: Mapping[str, str] | None = None) -> str | None:
    """The preset's API key from the environment (``None`` when unset or empty)."""
    if not preset.api_key_env:
        return None
    env = os.environ if env is None else env
    return env.get(preset.api_key_env) or None


def availability(
    preset: EndpointPreset, env: Mapping[str, str] | None = None
) -> tuple[bool, str]:
    """Whether ``preset`` is usable as configured, and why not.

    Checks only the environment (no network): a hosted endpoint needs its API
    key variable set.  Local servers are reported usable, with a reminder that
    the server must be running.
    """
    if preset.api_key_required and not api_key_from_env(preset, env):
        return False, f"set {preset.api_key_env} to your {preset.description} key"
    if preset.is_local:
        url = preset.resolved_base_url(env)
        return True, f"needs a server running at {url} (override with {preset.base_url_env})"
    return True, "ok"
