"""edge_dac.daemon.memory: glibc's arena cap and malloc_trim, measured on this process's own RSS."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from edge_dac.daemon import memory

GLIBC = memory._glibc() is not None

# A child process, so the measurement starts clean and the cap does not outlive the test. It holds
# 200 MB in 2 kB bytes objects (malloc'd on the main heap: above pymalloc's 512 bytes, far below the
# mmap threshold), frees 99 in 100 (the survivors pin the pages, so free() alone cannot shrink the
# heap), then calls release(): only malloc_trim gives the free pages in between back.
CHILD = """
import json, sys
from edge_dac.daemon import memory

def rss_mb():
    line = next(x for x in open("/proc/self/status") if x.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024

limited = memory.limit_arenas()
before = rss_mb()
blocks = [bytes(2000) for _ in range(100_000)]
held = rss_mb()
kept = blocks[::100]
del blocks
freed = rss_mb()
released = memory.release()
print(json.dumps({"limited": limited, "before": before, "held": held, "freed": freed,
                  "released": released, "after": rss_mb(), "kept": len(kept)}))
"""


@pytest.mark.skipif(not GLIBC, reason="mallopt(M_ARENA_MAX) and malloc_trim are glibc's")
def test_release_gives_freed_heap_pages_back_to_the_system():
    result = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, check=True, timeout=60)
    figures = json.loads(result.stdout)
    assert figures["limited"] is True
    assert figures["held"] - figures["before"] > 150  # the 200 MB are resident
    assert figures["freed"] - figures["before"] > 150  # free() alone keeps them: the survivors pin the heap
    assert figures["released"] is True
    assert figures["freed"] - figures["after"] > 100  # malloc_trim returned most of them


def test_without_glibc_both_do_nothing_and_say_so(monkeypatch):
    monkeypatch.setattr(memory, "_glibc", lambda: None)
    assert memory.limit_arenas() is False
    assert memory.release() is False
