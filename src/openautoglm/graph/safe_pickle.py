"""A restricted unpickler for the Planetoid ``ind.<name>.*`` files.

Those files are Python 2 pickles of numpy arrays, scipy CSR matrices and a
``defaultdict`` of lists.  ``pickle.load`` would run any callable a file names;
:class:`RestrictedUnpickler` resolves only the handful of globals these files need
and refuses everything else with :class:`UnsafePickleError`.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any, Callable

from ..errors import InputDataError

__all__ = ["RestrictedUnpickler", "UnsafePickleError", "safe_load"]


class UnsafePickleError(InputDataError):
    """A pickle names a global outside the allow-list."""


def _csr_matrix() -> Any:
    import scipy.sparse

    return scipy.sparse.csr_matrix


def _numpy_reconstruct() -> Any:
    import numpy as np

    try:  # numpy >= 2 moved numpy.core to numpy._core
        from numpy._core.multiarray import _reconstruct  # type: ignore[attr-defined]
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]
    del np
    return _reconstruct


def _numpy_attr(name: str) -> Callable[[], Any]:
    def get() -> Any:
        import numpy as np

        return getattr(np, name)

    return get


def _defaultdict() -> Any:
    import collections

    return collections.defaultdict


#: (module, name) -> factory of the object it may resolve to.  Nothing else loads.
_ALLOWED: dict[tuple[str, str], Callable[[], Any]] = {
    ("numpy", "ndarray"): _numpy_attr("ndarray"),
    ("numpy", "dtype"): _numpy_attr("dtype"),
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("scipy.sparse.csr", "csr_matrix"): _csr_matrix,
    ("scipy.sparse._csr", "csr_matrix"): _csr_matrix,
    ("scipy.sparse", "csr_matrix"): _csr_matrix,
    ("collections", "defaultdict"): _defaultdict,
    ("_codecs", "encode"): lambda: __import__("_codecs").encode,  # bytes in Python 3 protocol-2 pickles
    ("__builtin__", "list"): lambda: list,
    ("builtins", "list"): lambda: list,
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler whose ``find_class`` allows only numpy/scipy.sparse/defaultdict names."""

    source = "<pickle>"

    def find_class(self, module: str, name: str) -> Any:  # noqa: D102
        factory = _ALLOWED.get((module, name))
        if factory is None:
            raise UnsafePickleError(
                f"{self.source}: refusing to load global {module}.{name} (not a numpy/scipy.sparse/defaultdict name)",
                hint="only load Planetoid files from a trusted source; this file is not a plain data pickle",
            )
        return factory()


def safe_load(path: str | Path | bytes) -> Any:
    """Unpickle a file (or bytes) with :class:`RestrictedUnpickler` (latin1 for Python 2 pickles)."""
    if isinstance(path, bytes):
        data, source = path, "<bytes>"
    else:
        source = str(path)
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise InputDataError(f"{source}: cannot read ({exc.strerror})",
                                 hint="check the path to the Planetoid folder") from exc
    unpickler = RestrictedUnpickler(io.BytesIO(data), encoding="latin1")
    unpickler.source = source
    try:
        return unpickler.load()
    except UnsafePickleError:
        raise
    except Exception as exc:  # truncated/corrupt file
        raise InputDataError(f"{source}: not a readable pickle ({type(exc).__name__}: {exc})",
                             hint="re-copy the file; Planetoid files come from kimiyoung/planetoid") from exc
