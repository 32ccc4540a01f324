"""nginx in front of one or more backends: ``callgate demo --cluster``, the cluster
test and the benchmarks. Needs the ``nginx`` binary (Debian ``nginx-light``)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

__all__ = ["available", "free_port", "start", "wait_for_port"]

CONF = """
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 8192; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/body;
  proxy_temp_path {tmp}/proxy;
  fastcgi_temp_path {tmp}/fcgi;
  uwsgi_temp_path {tmp}/uwsgi;
  scgi_temp_path {tmp}/scgi;
  upstream backends {{
    {balance}
    {servers}
    keepalive 512;
  }}
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location / {{
      proxy_pass http://backends;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
      proxy_request_buffering off;
      proxy_read_timeout 300s;
      proxy_next_upstream error timeout;
    }}
  }}
}}
"""


def available() -> bool:
    """Whether an ``nginx`` binary is on ``PATH``."""
    return shutil.which("nginx") is not None


def free_port() -> int:
    """A TCP port on 127.0.0.1 nothing listened on a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    """Return once something accepts on 127.0.0.1:``port``; ``TimeoutError`` after
    ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise TimeoutError(f"nothing listens on port {port}")


def start(tmp: Path, backends: list[int], *, port: int | None = None, balance: str = "") -> tuple[subprocess.Popen[bytes], int]:
    """nginx on a free port (or ``port``) proxying to ``backends`` (ports on 127.0.0.1)
    round-robin, or with ``balance`` (e.g. ``hash $http_x_call_id consistent;``).
    Returns the process and its port."""
    for d in ("body", "proxy", "fcgi", "uwsgi", "scgi"):
        (tmp / d).mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    servers = "\n    ".join(f"server 127.0.0.1:{b} max_fails=0;" for b in backends)
    conf = tmp / "nginx.conf"
    conf.write_text(CONF.format(tmp=tmp, port=port, servers=servers, balance=balance))
    proc = subprocess.Popen([shutil.which("nginx") or "nginx", "-c", str(conf), "-p", str(tmp)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(port)
    return proc, port
