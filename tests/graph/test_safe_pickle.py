from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import scipy.sparse as sp

from openautoglm.errors import InputDataError
from openautoglm.graph.safe_pickle import UnsafePickleError, safe_load


class _Evil:
    def __reduce__(self):  # the classic payload: calls os.system on load
        return (os.system, ("echo pwned > /tmp/openautoglm-pwned",))


def test_refuses_a_pickle_that_calls_a_function(tmp_path):
    path = tmp_path / "ind.cora.x"
    path.write_bytes(pickle.dumps(_Evil(), protocol=2))
    with pytest.raises(UnsafePickleError) as err:
        safe_load(path)
    assert "system" in str(err.value) and str(path) in str(err.value)
    assert not os.path.exists("/tmp/openautoglm-pwned")


@pytest.mark.parametrize("payload", [
    b"cbuiltins\neval\n(S'1+1'\ntR.",            # GLOBAL builtins.eval
    b"c__builtin__\ngetattr\n(S'x'\nS'y'\ntR.",  # a Python 2 builtin outside the allow-list
    b"csubprocess\nPopen\n(S'true'\ntR.",
])
def test_refuses_other_globals(payload):
    with pytest.raises(UnsafePickleError):
        safe_load(payload)


def test_loads_numpy_scipy_and_defaultdict():
    from collections import defaultdict

    graph = defaultdict(list, {0: [1, 2], 1: [0]})
    arr = np.arange(6, dtype=np.float32).reshape(2, 3)
    mat = sp.csr_matrix(arr)
    loaded = safe_load(pickle.dumps((arr, mat, graph), protocol=2))
    assert np.array_equal(loaded[0], arr)
    assert (loaded[1] != mat).nnz == 0
    assert loaded[2][0] == [1, 2]


def test_corrupt_file_is_a_clear_error(tmp_path):
    path = tmp_path / "broken"
    path.write_bytes(pickle.dumps([1, 2, 3])[:-3])
    with pytest.raises(InputDataError, match="broken"):
        safe_load(path)
    with pytest.raises(InputDataError, match="cannot read"):
        safe_load(tmp_path / "missing")
