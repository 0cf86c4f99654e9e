"""Unguessable ids from the OS's random source, read in blocks: one getrandom call per job id was 4% of a
submit's CPU time."""

from __future__ import annotations

import os
import threading


class _RandomPool:
    """os.urandom read 4 KiB at a time. The bytes are the same kind; a lock keeps two threads from
    taking the same ones, and a forked child forgets its parent's pool."""

    SIZE = 4096

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._bytes = b""
        self._at = 0

    def take(self, count: int) -> bytes:
        with self._lock:
            if self._at + count > len(self._bytes):
                self._bytes, self._at = os.urandom(max(self.SIZE, count)), 0
            taken = self._bytes[self._at : self._at + count]
            self._at += count
            return taken

    def forget(self) -> None:
        with self._lock:
            self._bytes, self._at = b"", 0


_pool = _RandomPool()
os.register_at_fork(after_in_child=_pool.forget)


def random_hex(count: int) -> str:
    """`count` random bytes as hex (secrets.token_hex's output)."""
    return _pool.take(count).hex()
