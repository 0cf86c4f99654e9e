"""Worker ids: which process holds a lease, and whether it provably lives beside this one.

A worker id is `host:pid:token:namespace`. The namespace names the kernel (its boot id) and the PID
namespace the process lives in (the inode of /proc/self/ns/pid). Why not the host name alone: two
containers with host networking share a host name but not their PIDs, and both are often PID 1, so a
PID seen from one says nothing about the other. A PID is only checked against a process when both
ids name the same host, kernel and PID namespace; any other owner (another machine, another
container, an id this code cannot read, such as an older version's `host:pid:token`) is judged by
its lease's expiry alone.
"""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass

BOOT_ID_FILE = "/proc/sys/kernel/random/boot_id"
PID_NAMESPACE_FILE = "/proc/self/ns/pid"


def local_namespace() -> str | None:
    """`<inode of this PID namespace>.<boot id>`, or None where either cannot be read (no /proc, not
    Linux): then no other worker can be proved to share this PID space, which is the safe answer."""
    try:
        inode = os.stat(PID_NAMESPACE_FILE).st_ino
        with open(BOOT_ID_FILE, encoding="ascii") as file:
            boot_id = file.read().strip().replace("-", "")
    except (OSError, ValueError):
        return None
    if not boot_id.isalnum() or not inode:
        return None
    return f"{inode}.{boot_id}"


def new_worker_id() -> str:
    """host:pid:token:namespace. The token tells two pools of one process apart (and a restarted server
    from its dead predecessor); the namespace is "unknown" where it cannot be read."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}:{local_namespace() or 'unknown'}"


@dataclass(frozen=True)
class WorkerId:
    host: str
    pid: int
    token: str
    #: None when unknown: such a worker is never taken for a local one
    namespace: str | None

    @classmethod
    def parse(cls, text: str) -> WorkerId | None:
        """The parts of a worker id; None for any other shape (an older version's `host:pid:token`)."""
        parts = text.rsplit(":", 3)
        if len(parts) != 4:
            return None
        host, pid, token, namespace = parts
        if not pid.isdigit() or int(pid) <= 0 or not namespace:
            return None
        return cls(host, int(pid), token, None if namespace == "unknown" else namespace)

    def beside(self, other: WorkerId) -> bool:
        """Whether both live on one host, kernel and PID namespace: one's PID names the other's process."""
        return self.namespace is not None and (self.host, self.namespace) == (other.host, other.namespace)


def dead_local_owners(owners: list[str], my_worker_id: str) -> list[str]:
    """Lease owners beside this process (see WorkerId.beside) whose process is gone: their jobs need
    not wait for lease expiry. Another pool of this very process is alive by definition; every owner
    not provably beside this one is left to lease expiry."""
    me = WorkerId.parse(my_worker_id)
    if me is None or me.namespace is None:
        return []
    dead = []
    for owner in owners:
        other = WorkerId.parse(owner)
        if other is None or owner == my_worker_id or not me.beside(other) or other.pid == me.pid:
            continue
        if not _process_alive(other.pid):
            dead.append(owner)
    return dead


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process, alive
        return True
    return True
