"""Runs `ingot serve` as a real subprocess on free ports, the way a user starts it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

# One port chooser for the tests and the benchmarks (below the kernel's ephemeral range).
from bench.peers import free_port, free_port_run  # noqa: F401

READY = re.compile(r"^ingot serve: (\S+) ready on (\S+) \(pid (\d+)\)")
STARTUP_TIMEOUT_S = 120


@dataclass
class Mesh:
    home: Path
    # More `ingot serve` flags (e.g. --catalog-url); with --tls-cert the base URL is https.
    args: list[str] = field(default_factory=list)
    # More environment for every process (e.g. INGOT_API_KEYS, or INGOT_ settings the launcher does not relay).
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None
    addresses: dict[str, str] = field(default_factory=dict)
    pids: dict[str, int] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)
    _changed: threading.Condition = field(default_factory=threading.Condition)

    @property
    def base_url(self) -> str:
        scheme = "https" if "--tls-cert" in self.args else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def start(self) -> Mesh:
        env = {**os.environ, "INGOT_HOME": str(self.home), "PYTHONUNBUFFERED": "1", **self.env}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ingot.cli", "serve", "--port", str(self.port),
             "--registry-listen", "127.0.0.1:0", "--tokenizer-listen", "127.0.0.1:0",
             "--inference-listen", "127.0.0.1:0", "--embeddings-listen", "127.0.0.1:0", *self.args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True,
        )
        threading.Thread(target=self._read, daemon=True).start()
        self.wait_for(lambda: any(line.startswith("ingot ready on") for line in self.lines), STARTUP_TIMEOUT_S,
                      "the mesh to start")
        return self

    def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            line = line.rstrip("\n")
            with self._changed:
                self.lines.append(line)
                if match := READY.match(line):
                    self.addresses[match.group(1)] = match.group(2)
                    self.pids[match.group(1)] = int(match.group(3))
                self._changed.notify_all()

    def wait_for(self, predicate, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.process is not None and self.process.poll() is not None):
                    tail = "\n".join(self.lines[-40:])
                    raise AssertionError(f"timed out waiting for {what}; launcher output:\n{tail}")
                self._changed.wait(min(remaining, 0.5))

    def kill(self, service: str) -> int:
        """SIGKILLs one service process; returns its pid."""
        pid = self.pids[service]
        os.kill(pid, signal.SIGKILL)
        return pid

    def wait_restarted(self, service: str, old_pid: int, timeout: float = 60) -> None:
        self.wait_for(lambda: self.pids.get(service) != old_pid, timeout, f"{service} to restart")

    def stop(self) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        return self.process.returncode
