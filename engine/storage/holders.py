"""Who holds a reservation in the catalog (an Idempotency-Key being answered), and whether that process is gone.

>>> holder = this_process()            # "host/boot/pid/start"
>>> is_gone(holder)
False

A holder names the machine, its boot, the process id and the process's start time, so a pid that the kernel has
handed to another process since reads as a different holder. Only holders on this machine can be checked: a holder
on another machine (a shared catalog) counts as alive, and its reservation expires after a bounded time instead
(see ``SqliteCatalog.reserve_key``).
"""

from __future__ import annotations

import functools
import os
import socket
from pathlib import Path


@functools.cache
def this_process() -> str:
    """This process as a holder. Cached: none of its parts change while the process lives (a fork gets a new pid,
    and ``os.register_at_fork`` clears the cache)."""
    pid = os.getpid()
    return "/".join((socket.gethostname(), _boot_id(), str(pid), _start_time(pid)))


os.register_at_fork(after_in_child=this_process.cache_clear)


def is_gone(holder: str) -> bool:
    """True only when ``holder`` is certainly not running: a process of this machine that exited (or whose pid now
    belongs to a process started later), or one from an earlier boot. Unknown holders are taken to be alive."""
    parts = holder.split("/")
    if len(parts) != 4:
        return False
    host, boot, pid_text, start = parts
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    if boot and _boot_id() and boot != _boot_id():
        return True  # the machine restarted since
    pid = int(pid_text)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # it exists, under another user
        pass
    return bool(start) and _start_time(pid) not in ("", start)


@functools.cache
def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot (Linux), or "" where it cannot be read."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    fields = stat[stat.rfind(")") + 2 :].split()  # after "pid (comm) ": field 3 onwards; comm may hold spaces
    return fields[19] if len(fields) > 19 else ""
