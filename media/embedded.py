"""An SFU child process for one-machine installs and tests: ``callbook serve`` starts one.

It runs in its own process so that forwarding media never competes with signaling for one event
loop, exactly as a separate media node would; it dies with its parent, even after SIGKILL.
"""

from __future__ import annotations

import ctypes
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request

from media.config import REDIS_ENV, SECRET_ENV, WORKERS_ENV

_PR_SET_PDEATHSIG = 1
#: How long a started SFU may take to answer. A child that is alive is still importing (aiortc,
#: PyAV, cryptography): on a loaded machine that took over 20 s, and ``callbook serve`` gave up.
START_TIMEOUT_S = 90.0


class EmbeddedMediaError(RuntimeError):
    pass


def _die_with_parent() -> None:
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _without(env: os._Environ[str], name: str) -> dict[str, str]:
    return {key: value for key, value in env.items() if key != name}


class EmbeddedMedia:
    """``start()`` returns (control URL, secret); the secret travels by environment, not argv."""

    def __init__(
        self,
        max_rooms: int = 100,
        launcher: tuple[str, ...] = (sys.executable, "-m", "media.server"),
    ) -> None:
        self.max_rooms = max_rooms
        #: The command that runs a media node, before its flags.
        self.launcher = launcher
        self.secret = secrets.token_urlsafe(32)
        self.url = ""
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = START_TIMEOUT_S) -> tuple[str, str]:
        # The node serves a socket bound and listening before it starts: polling a port nobody
        # listens on yet can connect to itself (the kernel may pick that very port as the
        # poll's own), and nothing can take the port between choosing it and binding it.
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        port = listener.getsockname()[1]
        command = [
            *self.launcher, "--host", "127.0.0.1", "--port", str(port),
            "--listen-fd", str(listener.fileno()),
            "--max-rooms", str(self.max_rooms),
            # Its rooms are its parent's calls, which the parent's own drain
            # (signaling/cluster/drain.py) lets run on for the grace period; by the time the
            # parent stops it, nobody is left to end a room, and waiting would only delay the exit.
            "--drain-grace-s", "0",
            # Its rooms run in its own process unless asked (CALLBOOK_MEDIA_WORKERS): on a
            # one-machine install signaling shares the cores, and one process is what it was.
            "--workers", os.environ.get(WORKERS_ENV) or "0",
        ]  # fmt: skip
        self._process = subprocess.Popen(
            command,
            # Its secret is its own, so it must not offer itself to other nodes in a registry.
            env={**_without(os.environ, REDIS_ENV), SECRET_ENV: self.secret},
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
            pass_fds=(listener.fileno(),),
        )
        listener.close()
        self.url = f"http://127.0.0.1:{port}"
        self._wait_ready(timeout_s)
        return self.url, self.secret

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise EmbeddedMediaError(f"the SFU exited with {self._process.returncode}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise EmbeddedMediaError(f"the SFU did not answer within {timeout_s:g} s")

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
