"""Model backends.  See :mod:`openautoglm.backends.base` for the contract."""
