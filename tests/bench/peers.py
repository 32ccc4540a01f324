"""The targets of ``make bench``'s side-by-side run, and the peers' installation.

A target is a proxy in front of the benchmark upstream (or none: ``direct``), run as
processes of its own: nginx (``proxy_buffering off``, one worker), ``callgate serve``
(``--workers 1`` and ``--workers auto``), LiteLLM's proxy (PyPI ``litellm[proxy]``) and
Portkey's gateway (npm ``@portkey-ai/gateway``, on Node); and the floor
of callgate's stack (:mod:`tests.bench.floor`: ``aiohttp``, a bare aiohttp relay, and
``aiohttp+inspect``, the same with callgate's sans-IO stages on each read). The peers live outside the
repository, in ``$BENCH_PEERS`` (default ``~/.cache/callgate-bench-peers``): LiteLLM
in a virtualenv of its own (never callgate's), Portkey in a ``node_modules``. A peer
that is not installed is skipped with a line saying how to install it.

Install: ``python -m tests.bench.peers install`` (``make bench-peers``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from proxy.demo import nginx
from proxy.demo.nginx import free_port, wait_for_port

from .run import PY, ROOT, cpu_seconds, memory_kib, tree

PEERS = Path(os.environ.get("BENCH_PEERS") or Path.home() / ".cache" / "callgate-bench-peers")
LITELLM = PEERS / "litellm-venv" / "bin" / "litellm"
PORTKEY = PEERS / "portkey" / "node_modules" / "@portkey-ai" / "gateway" / "build" / "start-server.js"
# @hono/node-server past 1.14.2 makes the gateway answer every request with a 500
# ("TypeError: immutable": Portkey-AI/gateway issues 1389 and 1550); pinned, as those
# issues suggest. Seen with gateway 1.15.2 on Node 20 here, the pin did not help:
# Portkey's rows then show only errors, which is what the table says.
PORTKEY_PACKAGE = {"dependencies": {"@portkey-ai/gateway": "^1.15.2"}, "overrides": {"@hono/node-server": "1.14.2"}}
# The checkout whose callgate the ``callgate`` targets run (default: this one). Another
# checkout of callgate (a release, a branch) gives a before/after in one run, each
# measured beside the same nginx: ``BENCH_CALLGATE_ROOT=../old make bench``.
CALLGATE_ROOT = Path(os.environ.get("BENCH_CALLGATE_ROOT") or ROOT)
FLOORS = ("aiohttp", "aiohttp+inspect")  # the least an aiohttp relay costs (tests/bench/floor.py)
KINDS = ("direct", "nginx", *FLOORS, "callgate", "callgate-auto", "litellm", "portkey")  # versus's default, in this order


@dataclass
class Target:
    """One proxy under test. ``headers``: what every request to it carries (a peer's
    routing); ``port``: where it listens once started."""

    kind: str
    up_port: int
    tmp: Path
    port: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def label(self) -> str:
        return {"callgate": "callgate 1 process", "callgate-auto": "callgate --workers auto"}.get(self.kind, self.kind)

    def missing(self) -> str | None:
        """Why this target cannot run here, or ``None``."""
        if self.kind == "nginx" and not nginx.available():
            return "nginx is not on the PATH (apt-get install nginx-light)"
        if self.kind == "litellm" and not LITELLM.exists():
            return f"LiteLLM's proxy is not installed in {LITELLM.parent.parent} (make bench-peers)"
        if self.kind == "portkey" and not (PORTKEY.exists() and shutil.which("node")):
            return f"Portkey's gateway is not installed in {PEERS / 'portkey'}, or node is missing (make bench-peers)"
        return None

    def start(self) -> None:
        """Start it and wait until it accepts connections."""
        up = f"http://127.0.0.1:{self.up_port}/v1"
        log = (self.tmp / f"{self.kind}.log").open("w")
        if self.kind == "direct":
            self.port = self.up_port
        elif self.kind == "nginx":
            self.proc, self.port = nginx.start(self.tmp / "nginx", [self.up_port])
        elif self.kind in ("callgate", "callgate-auto"):
            cfg = self.tmp / f"{self.kind}.yaml"
            cfg.write_text(f"upstream: {{base_url: '{up}', timeout_s: 60}}\nlog_level: warning\n"
                           f"storage: {{path: '{self.tmp / (self.kind + '.db')}'}}\n")
            self.port = free_port()
            workers = "1" if self.kind == "callgate" else "auto"
            self.proc = subprocess.Popen([PY, "-m", "proxy.cli", "serve", "--config", str(cfg), "--port", str(self.port),
                                          "--workers", workers], stdout=subprocess.DEVNULL, stderr=log, cwd=CALLGATE_ROOT)
        elif self.kind in FLOORS:
            self.port = free_port()
            inspect = ["--inspect"] if self.kind == "aiohttp+inspect" else []
            self.proc = subprocess.Popen([PY, "-m", "tests.bench.floor", "--upstream", up, "--port", str(self.port), *inspect],
                                         stdout=subprocess.DEVNULL, stderr=log, cwd=ROOT)
        elif self.kind == "litellm":
            cfg = self.tmp / "litellm.yaml"
            cfg.write_text(
                "model_list:\n  - model_name: '*'\n    litellm_params: {model: 'openai/*', api_base: '" + up + "', api_key: bench}\n"
                "litellm_settings: {drop_params: true, telemetry: false, set_verbose: false}\n"
                "general_settings: {master_key: sk-bench-0123456789abcdef}\n"
            )
            self.headers = {"Authorization": "Bearer sk-bench-0123456789abcdef"}
            self.port = free_port()
            env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR", "LITELLM_TELEMETRY": "False"}
            self.proc = subprocess.Popen([str(LITELLM), "--config", str(cfg), "--host", "127.0.0.1", "--port", str(self.port)],
                                         stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.tmp)
        elif self.kind == "portkey":
            self.port = free_port()
            self.headers = {"x-portkey-provider": "openai", "x-portkey-custom-host": up, "Authorization": "Bearer bench"}
            self.proc = subprocess.Popen(["node", str(PORTKEY), f"--port={self.port}", "--headless"],
                                         stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "NODE_ENV": "production"})
        if self.proc is not None:
            self._wait(120)

    def _wait(self, timeout: float) -> None:
        """Until it accepts; ``RuntimeError`` with its log's end when it exits first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.label} exited: {(self.tmp / (self.kind + '.log')).read_text()[-2000:]}")
            try:
                wait_for_port(self.port, 0.5)
                return
            except TimeoutError:
                pass
        raise TimeoutError(f"{self.label} does not listen on port {self.port}")

    def pids(self) -> list[int]:
        """The target's processes: the one started and its descendants (workers)."""
        return tree(self.proc.pid) if self.proc else []

    def cpu(self) -> float:
        """CPU seconds of its processes so far (``/proc/<pid>/stat``)."""
        return cpu_seconds(self.pids())

    def rss_mib(self) -> float:
        """Resident memory of its processes now (MiB, summed)."""
        return memory_kib(self.pids(), "VmRSS") / 1024

    def stop(self) -> None:
        """SIGTERM (nginx: SIGQUIT), then SIGKILL after 30 s."""
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGQUIT if self.kind == "nginx" else signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            for pid in reversed(self.pids()):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.proc.wait()
        self.proc = None


def install() -> int:
    """Install the peers into :data:`PEERS` (LiteLLM: a virtualenv of its own)."""
    PEERS.mkdir(parents=True, exist_ok=True)
    venv = LITELLM.parent.parent
    if not LITELLM.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)  # a venv of its own, whatever runs this
        subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", "litellm[proxy]"], check=True)
    if not PORTKEY.exists():
        if not shutil.which("npm"):
            print("npm is missing: Portkey's gateway is skipped (apt-get install nodejs npm)", file=sys.stderr)
        else:
            folder = PEERS / "portkey"
            folder.mkdir(exist_ok=True)
            (folder / "package.json").write_text(json.dumps(PORTKEY_PACKAGE, indent=1))
            subprocess.run(["npm", "install", "--prefix", str(folder), "--no-audit", "--no-fund"], check=True)
    print(f"peers in {PEERS}: litellm {'yes' if LITELLM.exists() else 'no'}, portkey {'yes' if PORTKEY.exists() else 'no'}")
    return 0


if __name__ == "__main__":
    sys.exit(install() if sys.argv[1:] == ["install"] else print(__doc__) or 2)
