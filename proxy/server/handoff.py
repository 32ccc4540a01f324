"""The listening socket, handed from a running server to the one replacing it.

A restart with no refused connection: the new ``callgate serve`` (same host and
port) first asks the running one for its listening socket, on the Linux abstract
Unix socket ``callgate-listen-<host>:<port>``; it gets the socket itself
(``SCM_RIGHTS``), so both processes accept from one kernel queue. When the old one
then stops on SIGTERM, it only closes its own descriptor: the queue, and every
connection waiting in it, stay with the new one. (Two ``SO_REUSEPORT`` listeners
would each have a queue of their own, and closing one resets what waits in it
unless ``net.ipv4.tcp_migrate_req`` is 1.) Only a process of the same user (or
root) is given the socket (``SO_PEERCRED``). With no server there, the new one
binds the port as usual.

Each server offers its socket (:class:`Offer`, a thread) once it listens; only one
process can hold the name, so a new server keeps trying every
:data:`RETRY_S` until the old one has let it go (on SIGTERM, before its drain).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import struct
import threading
import time

__all__ = ["Offer", "RETRY_S", "listen"]

log = logging.getLogger("callgate")

RETRY_S = 0.2  # how often the name, or the port, is tried again (s)
_HELLO = b"callgate-listen"


def _name(host: str, port: int) -> str:
    return f"\0callgate-listen-{host}:{port}"


def _take(host: str, port: int) -> list[socket.socket]:
    """The listening sockets of the server offering them on ``host:port`` (none
    when there is none)."""
    if port == 0:
        return []
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(5)
        try:
            conn.connect(_name(host, port))
            msg, fds, _, _ = socket.recv_fds(conn, 64, 16)
        except OSError:
            return []
    socks = [socket.socket(fileno=fd) for fd in fds]
    if msg != _HELLO or not socks or any(s.getsockname()[1] != port for s in socks):
        for s in socks:
            s.close()
        return []
    return socks


def listen(host: str, port: int, backlog: int, n: int = 1, *, timeout_s: float = 10.0) -> tuple[list[socket.socket], bool]:
    """``(sockets, taken)``: the running server's listening sockets when one offers
    them on ``host:port`` (``taken``), else ``n`` new ones bound there
    (``SO_REUSEPORT`` when ``n`` > 1, the kernel spreading connections over them).
    While the port is in use by a server that is stopping, tries again for up to
    ``timeout_s``; then raises the ``OSError`` of the bind."""
    deadline = time.monotonic() + timeout_s
    while True:
        taken = _take(host, port)
        if taken:
            return taken, True
        try:
            return _bind(host, port, backlog, n), False
        except OSError as e:
            if e.errno != errno.EADDRINUSE or time.monotonic() > deadline:
                raise
        time.sleep(RETRY_S)


def _bind(host: str, port: int, backlog: int, n: int) -> list[socket.socket]:
    first = socket.create_server((host, port), backlog=backlog, reuse_port=n > 1)
    port = first.getsockname()[1]
    return [first] + [socket.create_server((host, port), backlog=backlog, reuse_port=True) for _ in range(n - 1)]


class Offer:
    """Offers ``socks`` to the next server on their host and port until :meth:`close`."""

    def __init__(self, socks: list[socket.socket], host: str) -> None:
        self.socks = socks
        self.name = _name(host, socks[0].getsockname()[1])
        self.handed = False  # a new server took the sockets
        self._closed = threading.Event()
        self._server: socket.socket | None = None
        self._thread = threading.Thread(target=self._run, name="callgate-handoff", daemon=True)

    def start(self) -> Offer:
        """Start offering (in a thread); returns ``self``."""
        self._thread.start()
        return self

    def _bind(self) -> socket.socket | None:
        while not self._closed.is_set():
            server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                server.bind(self.name)
                server.listen(8)
                return server
            except OSError:  # the server before this one still holds the name
                server.close()
            self._closed.wait(RETRY_S)
        return None

    def _run(self) -> None:
        server = self._bind()
        if server is None:
            return
        self._server = server
        if self._closed.is_set():  # closed while binding
            server.close()
            return
        while not self._closed.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                self._hand(conn)

    def _hand(self, conn: socket.socket) -> None:
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        pid, uid, _ = struct.unpack("3i", creds)
        if uid not in (os.getuid(), 0):
            log.warning("refused the listening socket to pid %d of another user (uid %d)", pid, uid)
            return
        with contextlib.suppress(OSError):
            socket.send_fds(conn, [_HELLO], [s.fileno() for s in self.socks])
            self.handed = True
            log.info("handed the listening socket to pid %d (a new server on this port)", pid)

    def close(self) -> None:
        """Stop offering and let the name go (the next server may take it)."""
        self._closed.set()
        server, self._server = self._server, None
        if server is not None:
            with contextlib.suppress(OSError):
                server.shutdown(socket.SHUT_RDWR)
            server.close()
