"""Tokenizer + chat template without importing transformers.

Reads ``tokenizer.json`` with the Rust ``tokenizers`` library and renders the model's
Jinja chat template the way Hugging Face does (sandboxed, trim/lstrip blocks).
"""

from __future__ import annotations

import json
import re
from functools import cached_property
from pathlib import Path
from typing import Any, Sequence

from .base import Message, Prompt


class ChatTokenizer:
    def __init__(self, directory: Path, model_config: dict[str, Any]) -> None:
        from tokenizers import Tokenizer

        self.tok = Tokenizer.from_file(str(directory / "tokenizer.json"))
        cfg_path = directory / "tokenizer_config.json"
        self.config: dict[str, Any] = json.loads(cfg_path.read_text()) if cfg_path.is_file() else {}
        template = self.config.get("chat_template")
        tpl_file = directory / "chat_template.jinja"
        if tpl_file.is_file():
            template = tpl_file.read_text()
        self.chat_template: str | None = template if isinstance(template, str) else None
        self.eos_ids = self._eos_ids(model_config)
        self.bos_token = self._token_str(self.config.get("bos_token"))
        self.eos_token = self._token_str(self.config.get("eos_token"))
        # the BOS token, where the tokenizer adds one to a whole text (Gemma; not SmolLM2)
        bos_id = self.tok.token_to_id(self.bos_token) if self.bos_token else None
        added = self.tok.encode("a", add_special_tokens=True).ids[:1]
        self.bos_ids: list[int] = [bos_id] if bos_id is not None and added == [bos_id] else []

    @staticmethod
    def _token_str(value: Any) -> str:
        if isinstance(value, dict):
            return str(value.get("content", ""))
        return str(value or "")

    def _eos_ids(self, model_config: dict[str, Any]) -> set[int]:
        ids: set[int] = set()
        eos = model_config.get("eos_token_id")
        if isinstance(eos, int):
            ids.add(eos)
        elif isinstance(eos, list):
            ids.update(int(x) for x in eos)
        name = self._token_str(self.config.get("eos_token"))
        if name:
            tid = self.tok.token_to_id(name)
            if tid is not None:
                ids.add(tid)
        for name in ("<|im_end|>", "<|eot_id|>", "<|endoftext|>"):
            tid = self.tok.token_to_id(name)
            if tid is not None and name in (self.chat_template or ""):
                ids.add(tid)
        return ids

    @cached_property
    def _template(self):  # type: ignore[no-untyped-def]
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.globals["raise_exception"] = _raise
        return env.from_string(self.chat_template or "")

    def render(self, prompt: Prompt) -> str:
        """Chat messages → the model's prompt text (ending with the assistant header)."""
        if isinstance(prompt, str):
            return prompt
        if not self.chat_template:
            return _plain_chat(prompt)
        return self._template.render(
            messages=prompt,
            add_generation_prompt=True,
            bos_token=self.bos_token,
            eos_token=self.eos_token,
        )

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(well_formed(text), add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Whole prompts or documents: each starts with the model's BOS token where its
        tokenizer adds one (``bos_ids``), unless the text already begins with it."""
        out = [e.ids for e in self.tok.encode_batch([well_formed(t) for t in texts], add_special_tokens=False)]
        bos = self.bos_ids
        return [ids if not bos or ids[:1] == bos else bos + ids for ids in out]

    def decode(self, ids: Sequence[int]) -> str:
        return self.tok.decode(list(ids), skip_special_tokens=True)

    def id_to_token(self, token_id: int) -> str:
        return self.tok.id_to_token(token_id) or ""


_SURROGATE = re.compile("[\ud800-\udfff]")


def well_formed(text: str) -> str:
    """``text`` with every lone UTF-16 surrogate replaced by U+FFFD.

    A Python ``str`` may hold surrogate code points (``json.loads('"\\ud800"')``, text
    decoded with ``surrogateescape``); they are not Unicode scalar values, so the Rust
    tokenizer refuses them (``TypeError``).  They become U+FFFD, as a UTF-8 decoder with
    ``errors="replace"`` would make of them; a high surrogate followed by a low one is
    the character the pair encodes.
    """
    if _SURROGATE.search(text) is None:
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def _raise(message: str) -> None:
    raise ValueError(message)


def _plain_chat(messages: Sequence[Message]) -> str:
    lines = [f"{m['role'].capitalize()}: {m['content']}" for m in messages]
    return "\n".join(lines) + "\nAssistant:"
