"""Worker ids: a lease owner is taken for a dead process of this host only when it provably lives in
this PID namespace; every other owner waits for its lease to expire."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from litejobs.worker_ids import WorkerId, dead_local_owners, local_namespace, new_worker_id

pytestmark = pytest.mark.skipif(local_namespace() is None, reason="no /proc: no worker is provably local here")


def exited_pid() -> int:
    """The PID of a process of this namespace that has ended (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(30)
    return child.pid


def test_a_worker_id_names_the_host_the_pid_and_the_pid_namespace() -> None:
    me = WorkerId.parse(new_worker_id())
    assert me is not None
    assert (me.host, me.pid, me.namespace) == (socket.gethostname(), os.getpid(), local_namespace())
    inode = os.stat("/proc/self/ns/pid").st_ino
    assert me.namespace is not None and me.namespace.startswith(f"{inode}.")


def test_a_dead_process_beside_this_one_is_dead_and_a_live_one_is_not() -> None:
    me = new_worker_id()
    host, namespace = socket.gethostname(), local_namespace()
    dead = f"{host}:{exited_pid()}:aaaa:{namespace}"
    alive = f"{host}:{os.getppid()}:bbbb:{namespace}"
    assert dead_local_owners([dead, alive], me) == [dead]


def test_owners_not_provably_beside_this_process_are_left_to_lease_expiry() -> None:
    me = new_worker_id()
    host, namespace, pid = socket.gethostname(), local_namespace(), exited_pid()
    owners = [
        f"{host}:{pid}:cccc:4026599999.{'0' * 32}",  # same host name, another PID namespace (a container)
        f"{host}:{pid}:dddd:unknown",  # a host whose namespace could not be read
        f"{host}:{pid}:eeee",  # an older version's host:pid:token
        f"otherhost:{pid}:ffff:{namespace}",
        f"{host}:{os.getpid()}:0000:{namespace}",  # another pool of this very process: alive
        f"{host}:0:1111:{namespace}",
        "garbage",
    ]
    assert dead_local_owners(owners, me) == []


def test_a_process_that_cannot_read_its_namespace_proves_no_owner_dead() -> None:
    host = socket.gethostname()
    dead = f"{host}:{exited_pid()}:aaaa:unknown"
    assert dead_local_owners([dead], f"{host}:{os.getpid()}:bbbb:unknown") == []
    assert dead_local_owners([dead], f"{host}:{os.getpid()}:bbbb") == []
