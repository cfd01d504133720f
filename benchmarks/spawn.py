"""Run one command; write its wall time, CPU time, exit status and peak RSS as JSON to a
file.

    python spawn.py RESULT.json CMD [ARG...]

A process inherits the peak RSS of the process that forked it (Linux keeps
``ru_maxrss`` across an exec), so the boot paths are not forked from the benchmark's own
large process but from this small one; its ~10 MB is below any cloudboot figure. The
clock runs from just before the spawn to the child's exit, without this helper's start.
The CPU time is the child's user + system time, with that of the children it waited for
(the shell path's ``jq`` calls, a hook), as ``os.wait4`` reports it.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


def main() -> int:
    result, argv = Path(sys.argv[1]), sys.argv[2:]
    started = time.perf_counter()
    pid = os.posix_spawnp(argv[0], argv, os.environ)
    _pid, status, usage = os.wait4(pid, 0)
    elapsed = time.perf_counter() - started
    report = {
        "seconds": elapsed,
        "exit_code": os.waitstatus_to_exitcode(status),
        "maxrss_kb": usage.ru_maxrss,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
    }
    result.write_text(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
