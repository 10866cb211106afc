"""CPU time of other processes, read from /proc: where a benchmark's cycles went.

Fields as proc(5) numbers them in ``/proc/PID/stat``: utime (14) and stime (15) are
the process's own user and system time; cutime (16) and cstime (17) those of the
children it has waited for, which include their own waited-for children: a farm
worker's cutime holds every build child it reaped and the sandboxes those reaped.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

__all__ = ["cpu_seconds"]

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# Indexes into the fields after the ")" that ends the command name (field 2), which
# may itself hold spaces: field 3 (state) is index 0, so field N is index N - 3.
_UTIME, _STIME, _CUTIME, _CSTIME = 11, 12, 13, 14


def cpu_seconds(pid: int, *, children: bool = False) -> float:
    """User + system seconds of ``pid`` (and its waited-for children); NaN if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return math.nan
    fields = text.rsplit(")", 1)[1].split()
    wanted = (_UTIME, _STIME, _CUTIME, _CSTIME) if children else (_UTIME, _STIME)
    return sum(int(fields[index]) for index in wanted) / _CLOCK_TICKS
