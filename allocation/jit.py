"""Compile a function with numba, cached on disk where a cache folder is writable."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

import numba

__all__ = ["compiled"]

_F = TypeVar("_F", bound=Callable[..., Any])


def compiled(function: _F) -> _F:
    """Compile `function` with numba in nopython mode, caching it on disk when possible.

    numba raises at decoration when it finds no writable cache location, as in a
    read-only install without a writable ``NUMBA_CACHE_DIR`` or home folder. The
    function is then compiled in memory on its first call, each process anew.
    """
    try:
        return cast(_F, numba.njit(cache=True)(function))
    except RuntimeError:
        return cast(_F, numba.njit(cache=False)(function))
