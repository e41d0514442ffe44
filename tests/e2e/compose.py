"""The compose mesh of deploy/compose as the tests run it: the image built by deploy/image/build.sh, a Docker
daemon (started here when none runs, stopped again after), a compose project on free loopback ports.

Whether `make test` runs it: only when what goes into the image changed since the last green run. The key is a
hash of deploy/, pyproject.toml, protos/ and the code of the services and the edge (services/, edge/, ingot/);
the stamp of the last green run is DEPLOY_CACHE/compose-green (DEPLOY_CACHE: default $INGOT_HOME/deploy).
INGOT_DEPLOY_TEST=always (`make deploy-test`) runs it regardless, =never skips it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.e2e.mesh import free_port

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "deploy" / "compose" / "compose.yaml"
IMAGE_INPUTS = ("deploy", "pyproject.toml", "protos", "services", "edge", "ingot")
SERVICES = ("registry", "tokenizer", "inference", "embeddings", "edge")


def ingot_home() -> Path:
    return Path(os.environ.get("INGOT_HOME", "~/.ingot")).expanduser()


def deploy_cache() -> Path:
    return Path(os.environ.get("DEPLOY_CACHE") or ingot_home() / "deploy")


def stamp_path() -> Path:
    return deploy_cache() / "compose-green"


def inputs_hash() -> str:
    """A hash of every file (tracked or new, not ignored) that goes into the image."""
    listed = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-co", "--exclude-standard", "-z", "--",
                             *IMAGE_INPUTS], capture_output=True, check=True, timeout=60).stdout
    digest = hashlib.sha256()
    for name in sorted(filter(None, listed.split(b"\0"))):
        path = ROOT / name.decode()
        if path.is_file():
            digest.update(name + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def why_not_run() -> str | None:
    """None when the compose test should run now, else the reason it is skipped."""
    policy = os.environ.get("INGOT_DEPLOY_TEST", "changed")
    if policy == "always":
        return None
    if policy == "never":
        return "INGOT_DEPLOY_TEST=never"
    stamp = stamp_path()
    if stamp.is_file() and stamp.read_text().strip() == inputs_hash():
        return (f"deploy/, pyproject.toml and the service code are unchanged since the last green compose run "
                f"({stamp}); `make deploy-test` runs it anyway")
    return None


def docker_answers() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@contextmanager
def docker_daemon(log_dir: Path) -> Iterator[None]:
    """A running Docker daemon: the one already there, or one started for the tests (host networking only:
    no bridge, no iptables) and stopped after; its image cache persists for the next run."""
    if docker_answers():
        yield
        return
    dockerd = shutil.which("dockerd")
    if dockerd is None or os.geteuid() != 0:
        raise RuntimeError("no Docker daemon answers and none can be started here (needs root and docker.io)")
    log = open(log_dir / "dockerd.log", "wb")
    daemon = subprocess.Popen([dockerd, "--iptables=false", "--ip6tables=false", "--bridge=none"], stdout=log,
                              stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not docker_answers():
            if daemon.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"dockerd did not start: see {log_dir / 'dockerd.log'}")
            time.sleep(1)
        yield
    finally:
        daemon.terminate()
        try:
            daemon.wait(60)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait(30)
        log.close()


def build_image() -> str:
    """Builds (or finds in Docker's cache) the image; returns its name."""
    env = {**os.environ, "INGOT_HOME": str(ingot_home()), "DEPLOY_CACHE": str(deploy_cache()),
           "PYTHON": sys.executable}
    done = subprocess.run([str(ROOT / "deploy" / "image" / "build.sh")], env=env, capture_output=True, text=True,
                          timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"the image build failed:\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}")
    return done.stdout.strip().splitlines()[-1]


def compose_command() -> list[str]:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return ["docker", "compose"]


@dataclass
class ComposeMesh:
    image: str
    project: str = field(default_factory=lambda: f"ingot-test-{os.getpid()}")
    ports: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Free loopback ports (never the well-known ones), so another mesh on this host is left alone.
        chosen: set[int] = set()
        for service in SERVICES:
            port = free_port()
            while port in chosen:
                port = free_port()
            chosen.add(port)
            self.ports[service] = port

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "INGOT_IMAGE": self.image, "INGOT_BIND_HOST": "127.0.0.1",
                **{f"{service.upper()}_PORT": str(port) for service, port in self.ports.items()}}

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['edge']}"

    def compose(self, *args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run([*compose_command(), "--project-name", self.project, "--file", str(COMPOSE_FILE),
                               *args], env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise RuntimeError(f"compose {' '.join(args)} failed:\n{done.stderr[-4000:]}\n{self.logs()}")
        return done

    def up(self) -> None:
        self.compose("up", "--detach", timeout=900)

    def down(self) -> None:
        self.compose("down", "--volumes", "--remove-orphans", "--timeout", "20", timeout=300)

    def logs(self, tail: int = 30) -> str:
        done = subprocess.run([*compose_command(), "--project-name", self.project, "--file", str(COMPOSE_FILE),
                               "logs", "--no-color", "--tail", str(tail)], env=self.env, capture_output=True,
                              text=True, timeout=120)
        return done.stdout[-8000:]

    def container(self, service: str) -> dict:
        ids = self.compose("ps", "--quiet", service).stdout.split()
        assert len(ids) == 1, f"{service}: containers {ids}"
        return json.loads(subprocess.run(["docker", "inspect", ids[0]], capture_output=True, text=True,
                                         check=True, timeout=60).stdout)[0]

    def leftovers(self) -> list[str]:
        """Containers and volumes of this project still on the host."""
        label = f"label=com.docker.compose.project={self.project}"
        found = []
        for kind in (["ps", "--all"], ["volume", "ls"]):
            listed = subprocess.run(["docker", *kind, "--quiet", "--filter", label], capture_output=True,
                                    text=True, check=True, timeout=60).stdout.split()
            found += listed
        return found

    def wait_healthy(self, service: str, timeout: float = 600, restarted: bool = False) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            state = self.container(service)
            health = state["State"].get("Health", {}).get("Status")
            if health == "healthy" and (not restarted or state["RestartCount"] >= 1):
                return state
            if time.monotonic() > deadline:
                raise AssertionError(f"{service} not healthy after {timeout} s ({health}):\n{self.logs()}")
            time.sleep(2)
