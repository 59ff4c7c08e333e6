"""When can the OS be trusted about which pages of a file are in memory?

Linux 5.2 made ``mincore()`` conservative (a side-channel fix): for a file-backed mapping it
reports the real page-cache state only if the caller owns the file (or has CAP_FOWNER) or
may write to it; otherwise every page is reported resident. A false 100% is worse than no
answer, so callers ask :func:`mincore_is_truthful` first and report "unknown" when it says no.
"""

from __future__ import annotations

import os
import re
import sys

__all__ = ["linux_mincore_rule", "mincore_is_truthful"]

_CAP_FOWNER = 3


def _kernel_version(release: str) -> tuple[int, int]:
    m = re.match(r"(\d+)\.(\d+)", release)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def _has_cap_fowner() -> bool:
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"CapEff:"):
                    return bool(int(line.split()[1], 16) >> _CAP_FOWNER & 1)
    except OSError:
        pass
    return os.geteuid() == 0


def linux_mincore_rule(kernel_release: str, *, owner: bool, cap_fowner: bool,
                       writable: bool) -> bool:
    """The kernel's rule (mm/mincore.c, can_do_mincore) as a pure function."""
    if _kernel_version(kernel_release) < (5, 2):
        return True
    return owner or cap_fowner or writable


def mincore_is_truthful(path: str) -> bool:
    """True when page residency reported for a mapping of ``path`` reflects reality."""
    if sys.platform == "win32":
        return True  # QueryWorkingSetEx: this process's working set, always real
    if not sys.platform.startswith("linux"):
        return True  # macOS/BSD mincore has no such rule
    try:
        st = os.stat(path)
    except OSError:
        return False
    euid = os.geteuid()
    try:
        writable = os.access(path, os.W_OK, effective_ids=os.access in os.supports_effective_ids)
    except OSError:
        writable = False
    return linux_mincore_rule(os.uname().release, owner=st.st_uid == euid,
                              cap_fowner=_has_cap_fowner(), writable=writable)
