"""What cloudboot does to its own process while it holds a password."""

from __future__ import annotations

import ctypes
import sys

PR_SET_DUMPABLE = 4


def keep_memory_private() -> bool:
    """Make this process undumpable until it execs (``prctl(PR_SET_DUMPABLE, 0)``): no
    core file, and no other process of the same user may read its memory or environment
    through ``/proc/PID/mem``, ``/proc/PID/environ`` or ptrace (only root may). The
    kernel makes the exec'd program dumpable again, as any program is. Whether it
    worked: false off Linux or without a C library to call."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        # The C library already loaded into this process (glibc or musl): no search
        # (ctypes.util costs 10 ms at every start).
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return False
    return int(prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)) == 0
