"""Who holds a lease: runner names that say where a runner runs, and whether it is gone.

A runner is named ``<pid>-<token>@<host>#<node>``; ``node`` hashes this boot and PID namespace,
so on the same node a pid means the same process. A runner there can tell that a job's holder
was killed or crashed (no such process, or a zombie) and end its lease at once
(``Store.expire``) instead of waiting it out. Elsewhere (another host or container, or no
``/proc``) nothing is known and the lease simply runs out. A pid reused since by another
process reads as alive: the safe side (the lease is waited out, never taken from a live holder).
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import socket
from pathlib import Path


def _node() -> str:
    """This boot and PID namespace, hashed: a pid means the same process to every runner that
    shares it. "" where that cannot be known (no /proc): leases are then only waited out."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        pidns = os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""
    return hashlib.sha1(f"{boot} {pidns}".encode()).hexdigest()[:8]


NODE = _node()
_NAME = re.compile(r"(\d+)-[0-9a-f]+@[^#]*#([0-9a-f]{8})")


def runner_name() -> str:
    return f"{os.getpid()}-{secrets.token_hex(3)}@{socket.gethostname()}#{NODE}"


def holder_gone(runner: str) -> bool:
    """True when ``runner`` ran on this node and its process no longer exists (or is a zombie).
    A pid reused since by another process reads as alive: the lease is then waited out."""
    m = _NAME.fullmatch(runner)
    if m is None or not NODE or m.group(2) != NODE:
        return False
    try:
        stat = Path(f"/proc/{m.group(1)}/stat").read_text()
    except FileNotFoundError:
        return True
    except OSError:
        return False
    state = stat.rpartition(")")[2].split()[:1]
    return state in (["Z"], ["X"])
