"""Keeping the daemon's resident memory down where glibc's allocator decides it.

Every thread that allocates (capture, inference, heartbeat, ZeroMQ's) may get a malloc heap
("arena") of its own, and each keeps what was freed in it for reuse; with the engine's activations
(tens of MB a window) freed on the inference thread and others on the main thread, the process
holds several such reserves. ``limit_arenas`` caps them (measured: the daemon's peak RSS, VmHWM,
with the shipped model on ONNX Runtime in a 150 s ``--fast --loop`` demo run, 502 -> 484-487 MB);
``release`` gives free memory back to the system (``malloc_trim``), which the daemon does once after
loading the engine; after every batch it would cost ~40 % more engine CPU time (each batch faults
its pages in again) for a lower steady RSS but not a lower peak. Elsewhere than glibc (musl) both do
nothing and return False.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

M_ARENA_MAX = -8  # mallopt's parameter number in glibc's malloc.h


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018 - only glibc has it (and mallopt's M_ARENA_MAX, malloc_trim)
        return libc
    except (OSError, AttributeError):
        return None


def limit_arenas(arenas: int = 2) -> bool:
    """At most ``arenas`` malloc heaps for all threads; call before the threads start. True if applied."""
    libc = _glibc()
    return bool(libc and libc.mallopt(M_ARENA_MAX, arenas))


def release() -> bool:
    """Give the allocator's free memory back to the system. True if some was returned."""
    libc = _glibc()
    return bool(libc and libc.malloc_trim(0))
