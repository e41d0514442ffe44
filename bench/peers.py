"""The peers that `make bench PEERS=1` measures ingot against: llama.cpp's `llama-server` (see shared/PEERS.md).

`llama_server(home)` finds the binary: INGOT_LLAMA_SERVER, else a `llama-server` on PATH, else one built once
from the llama.cpp tree vendored in the `llama-cpp-python` sdist and cached in
`$INGOT_HOME/peers/llama.cpp-<sdist version>/`. The build happens in that folder and a stamp is written last,
so a build cut off half-way is never taken for a finished one: the next call wipes it and starts again.
Nothing of llama.cpp goes into this repository.

`LlamaServerProcess` runs the binary on a GGUF file on a free port until closed.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

# The sdist whose vendor/llama.cpp is built; the cache folder is keyed by it, so changing it rebuilds.
LLAMA_CPP_PYTHON = "0.3.36"
CMAKE_CONFIGURE = ("-DGGML_NATIVE=ON", "-DCMAKE_BUILD_TYPE=Release", "-DLLAMA_BUILD_UI=OFF",
                   "-DLLAMA_USE_PREBUILT_UI=OFF", "-DLLAMA_OPENSSL=OFF", "-DLLAMA_BUILD_TESTS=OFF",
                   "-DLLAMA_BUILD_EXAMPLES=OFF")
STAMP = "BUILT"  # written last, holding the binary's path relative to the folder
STARTUP_TIMEOUT_S = 120


def _log(message: str) -> None:
    print(f"  {message}", flush=True)


def llama_server(home: Path, log: Callable[[str], None] = _log) -> Path:
    """A `llama-server` binary: INGOT_LLAMA_SERVER, else on PATH, else the cached build (built if missing)."""
    if configured := os.environ.get("INGOT_LLAMA_SERVER"):
        binary = Path(configured).expanduser()
        if not binary.is_file():
            raise FileNotFoundError(f"INGOT_LLAMA_SERVER={configured} is not a file")
        return binary
    if found := shutil.which("llama-server"):
        return Path(found)
    folder = Path(home).expanduser() / "peers" / f"llama.cpp-{LLAMA_CPP_PYTHON}"
    stamp = folder / STAMP
    if stamp.is_file() and (binary := folder / stamp.read_text().strip()).is_file():
        return binary
    return _build(folder, log)


def _build(folder: Path, log: Callable[[str], None]) -> Path:
    log(f"building llama-server from llama-cpp-python {LLAMA_CPP_PYTHON}'s llama.cpp into {folder} "
        "... (a few minutes, once)")
    started = time.monotonic()
    shutil.rmtree(folder, ignore_errors=True)  # what an earlier, unfinished build left
    folder.mkdir(parents=True)
    source, build, journal = folder / "llama.cpp", folder / "llama.cpp" / "build", folder / "build.log"
    with tempfile.TemporaryDirectory(prefix="llama-cpp-python-", dir=folder.parent) as download:
        log(f"downloading the llama-cpp-python {LLAMA_CPP_PYTHON} sdist")
        _run([sys.executable, "-m", "pip", "download", "--quiet", "--no-binary", ":all:", "--no-deps",
              f"llama-cpp-python=={LLAMA_CPP_PYTHON}", "--dest", download], journal)
        sdist = next(Path(download).glob("llama_cpp_python-*.tar.gz"))
        log("extracting its vendor/llama.cpp")
        _extract_vendored(sdist, source)
    log("configuring (cmake)")
    _run(["cmake", "-S", str(source), "-B", str(build), *CMAKE_CONFIGURE], journal)
    log("compiling llama-server (cmake --build -j2)")
    _run(["cmake", "--build", str(build), "-j2", "--target", "llama-server"], journal)
    binary = build / "bin" / "llama-server"
    if not binary.is_file():
        raise RuntimeError(f"the llama.cpp build finished without {binary}; see {journal}")
    (folder / STAMP).write_text(f"{binary.relative_to(folder)}\n")
    log(f"built {binary} in {time.monotonic() - started:.0f} s")
    return binary


def _extract_vendored(sdist: Path, source: Path) -> None:
    """The sdist's `*/vendor/llama.cpp/` tree, unpacked as `source`."""
    with tarfile.open(sdist) as archive:
        members = []
        for member in archive.getmembers():
            parts = member.name.split("/")
            # Its .git is a pointer into llama-cpp-python's repository, which the sdist does not carry.
            if parts[1:3] == ["vendor", "llama.cpp"] and len(parts) > 3 and parts[3] != ".git" \
                    and not (member.issym() or member.islnk()):
                member.name = "/".join(parts[3:])
                members.append(member)
        if not members:
            raise RuntimeError(f"{sdist.name} has no vendor/llama.cpp")
        archive.extractall(source, members=members, filter="data")


def _run(command: list[str], journal: Path) -> None:
    with journal.open("a") as out:
        out.write(f"$ {' '.join(command)}\n")
        out.flush()
        result = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT)
    if result.returncode:
        tail = "\n".join(journal.read_text().splitlines()[-20:])
        raise RuntimeError(f"{command[0]} {command[1]} ... failed ({result.returncode}); see {journal}:\n{tail}")


def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


# Below the kernel's range for listen(0): the mesh's own services listen on port 0 and could otherwise take
# the port chosen here for the edge (or a peer) before it binds it.
_PORTS = range(10000, max(10001, _ephemeral_start()))


def free_port() -> int:
    for _ in range(1000):
        port = random.choice(_PORTS)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {_PORTS}")


def free_port_run(count: int) -> int:
    """The first of `count` consecutive free ports (a flag like --metrics-port hands out the ones after it)."""
    for _ in range(100):
        base = free_port()
        sockets = []
        try:
            for offset in range(count):
                sock = socket.socket()
                sockets.append(sock)
                sock.bind(("127.0.0.1", base + offset))
            return base
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise RuntimeError(f"no run of {count} free ports found")


class LlamaServerProcess:
    """`llama-server -m GGUF ARGS` on a free port of 127.0.0.1, healthy once started; a context manager."""

    def __init__(self, binary: Path, gguf: Path, args: list[str]) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen([str(binary), "-m", str(gguf), *args, "--host", "127.0.0.1",
                                         "--port", str(self.port)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            try:
                with urllib.request.urlopen(f"{self.base_url}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"llama-server did not become healthy within {STARTUP_TIMEOUT_S} s "
                                   f"(exit status {self.process.returncode})")
            time.sleep(0.5)

    def __enter__(self) -> LlamaServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
