"""``callgate serve`` as a real process, for the tests that kill, restart and measure it."""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import sys
from pathlib import Path


class ServeProcess:
    """One ``callgate serve --config CFG --port PORT`` process (0: any free one): :meth:`start` waits until
    it says where it listens (``url``); :meth:`kill` is SIGKILL, :meth:`stop` SIGTERM
    (returns the exit code); :meth:`rss_mib` reads its resident memory. Every one
    started is in ``ServeProcess.started`` (the tests' teardown kills what is left).
    ``workers``: ``--workers`` (default one process: the tests kill, signal and
    measure that process; ``None``: the default, one per core)."""

    started: list[ServeProcess] = []

    def __init__(self, cfg: Path, *extra: str, port: int = 0, workers: str | None = "1") -> None:
        self.cfg = cfg
        self.extra = extra if workers is None or "--workers" in extra else (*extra, "--workers", workers)
        self.port = port
        self.proc: asyncio.subprocess.Process | None = None
        self.url = ""
        self._drain: asyncio.Task[None] | None = None
        self.log: list[str] = []

    async def start(self, timeout: float = 30) -> str:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "proxy.cli", "serve", "--config", str(self.cfg), "--port", str(self.port), *self.extra,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )
        ServeProcess.started.append(self)
        assert self.proc.stderr is not None
        url = None
        while url is None:
            line = await asyncio.wait_for(self.proc.stderr.readline(), timeout)
            assert line, "callgate serve exited before listening: " + "".join(self.log[-5:])
            self.log.append(line.decode(errors="replace"))
            m = re.search(rb"listening on (http://\S+),", line)
            url = m and m.group(1).decode()
        self.url = url
        self._drain = asyncio.create_task(self._read_log())
        return url

    async def _read_log(self) -> None:  # keep the log pipe from filling up
        assert self.proc is not None and self.proc.stderr is not None
        while line := await self.proc.stderr.readline():
            self.log.append(line.decode(errors="replace"))
            del self.log[:-2000]

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    async def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()
        if self._drain is not None:
            self._drain.cancel()

    async def stop(self, timeout: float = 30) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        rc = await asyncio.wait_for(self.proc.wait(), timeout)
        if self._drain is not None:
            self._drain.cancel()
        return rc


def kill_leftovers() -> None:
    """SIGKILL every server a test started and left running (a failed test)."""
    for server in ServeProcess.started:
        if server.proc is not None and server.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                server.proc.kill()
    ServeProcess.started.clear()
