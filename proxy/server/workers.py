"""``callgate serve --workers N``: N server processes on one port (``SO_REUSEPORT``).

Their Prometheus metrics go to one ``PROMETHEUS_MULTIPROC_DIR`` (a temporary
directory unless set), so a scrape of any worker sums all of them.
The parent binds one listening socket per worker and hands it over (``--socket-fd``);
the kernel spreads new connections over them. They share the store (PostgreSQL, or
one SQLite file: both take several processes), which is what makes a call's turns,
events, end and steps right whichever process serves them. The parent only
supervises: it starts the workers, restarts one that dies, and on SIGTERM/SIGINT
stops them all and exits with 0 when they stopped cleanly. Like a lone server it
takes the sockets of a server running on its port and offers its own to the next
(:mod:`.handoff`): a restart refuses no connection.
"""

from __future__ import annotations

import logging
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from types import FrameType

from ..config import Config, safe_url
from ..storage import OpenMode, open_store
from . import handoff

__all__ = ["run_workers", "tell_ready"]

log = logging.getLogger("callgate")


def _wait_ready(fd: int, procs: list[subprocess.Popen[bytes]], timeout: float) -> bool:
    """Until every worker said it listens (a byte each on ``fd``): ``True``; ``False``
    as soon as one exits first (a config or database it cannot serve: restarting it
    would only fail again). After ``timeout`` s: ``True`` (the slow ones are
    supervised like the others)."""
    deadline = time.monotonic() + timeout
    got = 0
    while got < len(procs) and time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            return False
        readable, _, _ = select.select([fd], [], [], min(0.2, max(0.0, deadline - time.monotonic())))
        if readable:
            got += len(os.read(fd, len(procs) - got))
    return True


def _check_store(config: Config) -> None:
    """Open the store once, as a server would, and close it: pending migrations run
    here, once, and a database no worker could open fails the start (raises
    :class:`~proxy.errors.StorageError`) instead of workers restarted forever."""
    st = config.storage
    open_store(st.path, url=st.url, mode=OpenMode.SERVE, wal_max_bytes=st.wal_max_bytes, pool_size=1).close_sync()


def tell_ready() -> None:
    """In a worker: tell the parent this process listens (``CALLGATE_READY_FD``)."""
    fd = os.environ.pop("CALLGATE_READY_FD", None)
    if fd is not None:
        try:
            os.write(int(fd), b"1")
            os.close(int(fd))
        except OSError:
            pass


def run_workers(config: Config, config_path: str | None, n: int) -> int:
    """Supervise ``n`` workers until a signal; returns the exit code (1 when a worker
    exits before it listens). Raises :class:`~proxy.errors.StorageError` when the
    store cannot be opened, :class:`OSError` when the port cannot be bound."""
    _check_store(config)
    host = config.server.host
    socks, taken = handoff.listen(host, config.server.port, config.server.backlog, n)
    for sock in socks:
        sock.set_inheritable(True)
    port = socks[0].getsockname()[1]
    ready_r, ready_w = os.pipe()  # each worker writes a byte once it listens
    env = {**os.environ, "CALLGATE_READY_FD": str(ready_w)}
    own_metrics = "PROMETHEUS_MULTIPROC_DIR" not in env
    if own_metrics:  # the workers' metrics, summed by whichever one is scraped
        env["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="callgate-metrics-")

    def spawn(i: int) -> subprocess.Popen[bytes]:
        fd = socks[i % len(socks)].fileno()  # a server taken over may have had fewer
        cmd = [sys.executable, "-m", "proxy.cli", "serve", "--host", host, "--port", str(port), "--socket-fd", str(fd)]
        if config_path:
            cmd += ["--config", config_path]
        return subprocess.Popen(cmd, pass_fds=(ready_w, fd), env=env)

    procs = [spawn(i) for i in range(n)]
    stop = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stop
        stop = True

    def on_hup(signum: int, frame: FrameType | None) -> None:  # each worker reloads the file itself
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGHUP)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_hup)
    try:
        if not _wait_ready(ready_r, procs, timeout=60):
            log.error("a worker exited before it listened; stopping the others")
            _stop(procs)
            return 1
        offer = handoff.Offer(socks, host).start()
        log.info("callgate listening on http://%s:%d, %d workers, upstream %s%s", host, port, n,
                 safe_url(config.primary), " (the running server's socket, taken over)" if taken else "")
        while not stop:
            for i, p in enumerate(procs):
                if p.poll() is not None and not stop:
                    log.error("worker pid=%d exited with %s; starting another", p.pid, p.returncode)
                    procs[i] = spawn(i)
            time.sleep(0.2)
        offer.close()
        return 0 if all(c == 0 for c in _stop(procs)) else 1
    finally:
        for sock in socks:
            sock.close()
        if own_metrics:
            shutil.rmtree(env["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)


def _stop(procs: list[subprocess.Popen[bytes]]) -> list[int]:
    """SIGTERM each worker still running; their exit codes once all have exited."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    return [p.wait() for p in procs]
