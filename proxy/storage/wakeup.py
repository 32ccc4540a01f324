"""Wake-ups between the processes of one SQLite database (PostgreSQL has ``NOTIFY``).

Each server process binds a Linux abstract-namespace datagram socket named
``callgate-<digest of the database's real path>-<pid>-<token>``; a commit that
:meth:`~proxy.storage.db.Conn.notify`-ed sends its payloads (``events:<call>``,
``ended:<call>``, ``jobs``, ``deliveries``, ``reset``; one datagram, lines of UTF-8)
to every other such socket of the same database, found in ``/proc/net/unix``
(re-read at most every :data:`PEERS_TTL_S`). As with ``NOTIFY``, a wake-up is only
a hint: followers re-read at every keep-alive and workers poll, so a lost one (a
full peer buffer, a peer that just started) only delays. SQLite's processes are on
one machine (its locking needs one), so one machine's sockets reach all of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable, Iterable

__all__ = ["PEERS_TTL_S", "Wakeups"]

log = logging.getLogger("callgate.storage")

PEERS_TTL_S = 0.5  # how long the list of peers is reused (s)


class Wakeups:
    """The wake-ups of the database at ``path``: :meth:`send` from any thread,
    :meth:`listen` on an event loop (``on_payload(payload)`` for each one received)."""

    def __init__(self, path: str) -> None:
        digest = hashlib.sha256(os.path.realpath(path).encode()).hexdigest()[:16]
        self.prefix = f"callgate-{digest}-"
        self.name = f"{self.prefix}{os.getpid()}-{secrets.token_hex(4)}"
        self._out = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._out.setblocking(False)
        self._in: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._peers: list[str] = []
        self._peers_at = float("-inf")

    def listen(self, loop: asyncio.AbstractEventLoop, on_payload: Callable[[str], None]) -> None:
        """Bind this process's socket and hand each payload received to ``on_payload``
        (on ``loop``)."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind("\0" + self.name)
        sock.setblocking(False)
        self._in, self._loop = sock, loop

        def readable() -> None:
            while True:
                try:
                    data = sock.recv(65536)
                except (BlockingIOError, InterruptedError):
                    return
                except OSError:
                    return
                for payload in data.decode("utf-8", "replace").splitlines():
                    on_payload(payload)

        loop.add_reader(sock.fileno(), readable)

    def send(self, payloads: Iterable[str]) -> None:
        """Send ``payloads`` to every other process of this database (never blocks;
        a peer that is gone or full is skipped)."""
        unique = list(dict.fromkeys(payloads))
        if not unique:
            return
        data = "\n".join(unique).encode()
        for peer in self._current_peers():
            try:
                self._out.sendto(data, "\0" + peer)
            except (ConnectionRefusedError, FileNotFoundError):
                self._peers_at = float("-inf")  # gone: look again next time
            except OSError:  # full (BlockingIOError), too big: a lost wake-up only delays
                pass

    def _current_peers(self) -> list[str]:
        now = time.monotonic()
        if now - self._peers_at > PEERS_TTL_S:
            self._peers, self._peers_at = _abstract_sockets(self.prefix, self.name), now
        return self._peers

    def close(self) -> None:
        """Stop listening and close both sockets."""
        if self._in is not None:
            if self._loop is not None and not self._loop.is_closed():
                with contextlib.suppress(Exception):
                    self._loop.remove_reader(self._in.fileno())
            self._in.close()
            self._in = None
        self._out.close()


def _abstract_sockets(prefix: str, me: str) -> list[str]:
    """The names of the abstract Unix sockets starting with ``prefix``, but ``me``
    (``/proc/net/unix`` shows them as ``@name``, last on their line)."""
    try:
        with open("/proc/net/unix", "rb") as f:
            lines = f.read().decode("utf-8", "replace").splitlines()[1:]
    except OSError:
        return []
    names = {line.rsplit(" ", 1)[-1][1:] for line in lines if f" @{prefix}" in line}
    names.discard(me)
    return sorted(names)
