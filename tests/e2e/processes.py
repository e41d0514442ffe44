"""Single ingot processes (`ingot inference --listen ...`, `ingot edge ...`) started the way an operator runs
replicas: each its own process, several on one port or several loopback addresses behind one target."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

LISTENING = re.compile(r"^ingot (\S+) listening on (\S+)")
STARTUP_TIMEOUT_S = 90


def port_free_on(hosts: list[str]) -> int:
    """A port nothing listens on at any of `hosts` (every address in 127.0.0.0/8 is loopback)."""
    for _ in range(100):
        with socket.socket() as first:
            first.bind((hosts[0], 0))
            port = first.getsockname()[1]
            try:
                for host in hosts[1:]:
                    with socket.socket() as other:
                        other.bind((host, port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no port free on all of {hosts}")


@dataclass
class Process:
    """`ingot COMMAND ARGS` with stdout and stderr collected; `address` is what it said it listens on."""

    command: str
    args: list[str]
    home: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    # Where its Prometheus endpoint (a service) or its HTTP API (an edge) is, when the test asked for one.
    metrics_port: int = 0
    base_url: str = ""
    process: subprocess.Popen | None = None
    address: str | None = None
    lines: list[str] = field(default_factory=list)
    _changed: threading.Condition = field(default_factory=threading.Condition)

    def start(self, wait: bool = True) -> Process:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        if self.home is not None:
            env["INGOT_HOME"] = str(self.home)
        self.process = subprocess.Popen([sys.executable, "-m", "ingot.cli", self.command, *self.args],
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                        start_new_session=True)
        threading.Thread(target=self._read, daemon=True).start()
        if wait:
            self.wait_for(lambda: self.address is not None, STARTUP_TIMEOUT_S, "it to listen")
        return self

    def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                if (match := LISTENING.match(line)) and match.group(1) == self.command:
                    self.address = match.group(2)
                self._changed.notify_all()

    def wait_for(self, predicate, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.process is not None and self.process.poll() is not None):
                    tail = "\n".join(self.lines[-30:])
                    raise AssertionError(f"ingot {self.command}: timed out waiting for {what}; output:\n{tail}")
                self._changed.wait(min(remaining, 0.5))

    def output(self) -> str:
        with self._changed:
            return "\n".join(self.lines)

    def kill(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def metric(port: int, name: str, **labels: str) -> float:
    """The sum of a Prometheus metric's samples whose labels include `labels`; 0 if there are none."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        head, _, value = line.rpartition(" ")
        if all(f'{key}="{wanted}"' in head for key, wanted in labels.items()):
            total += float(value)
    return total
