"""`ingot serve` as a subprocess on free ports, for benchmarks that measure the whole mesh."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench.peers import free_port

STARTUP_TIMEOUT_S = 120
READY = re.compile(r"^ingot serve: (\S+) ready on \S+ \(pid (\d+)\)")


class Mesh:
    def __init__(self, home: Path, env: dict[str, str] | None = None) -> None:
        self.home = home
        # INGOT_ settings for every service of this mesh.
        self.env = env or {}
        self.port = free_port()
        self.lines: list[str] = []
        # Each service's pid, from the launcher's "ingot serve: NAME ready on ADDR (pid N)" lines.
        self.pids: dict[str, int] = {}
        self._ready = threading.Event()
        self.process: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Mesh:
        env = {**os.environ, **self.env, "INGOT_HOME": str(self.home), "PYTHONUNBUFFERED": "1"}
        listen = [flag for name in ("registry", "tokenizer", "inference", "embeddings")
                  for flag in (f"--{name}-listen", "127.0.0.1:0")]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ingot.cli", "serve", "--port", str(self.port), "--log-level", "warning", *listen],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)
        threading.Thread(target=self._read, daemon=True).start()
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not self._ready.wait(0.2):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.__exit__(None, None, None)
                tail = "\n".join(self.lines[-30:])
                raise RuntimeError(f"ingot serve did not start:\n{tail}")
        return self

    def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            if match := READY.match(line):
                self.pids[match.group(1)] = int(match.group(2))
            if line.startswith("ingot ready on"):
                self._ready.set()

    def rss_mb(self, service: str, field: str = "VmRSS") -> float:
        """A service's resident memory (VmRSS) or its peak (VmHWM), in MB."""
        for line in Path(f"/proc/{self.pids[service]}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
        raise RuntimeError(f"no {field} for {service}")

    def __exit__(self, *exc: object) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
