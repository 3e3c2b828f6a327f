"""What the local development servers (the Kafka broker, the HAPI FHIR server) share: a pid file, a port check and a
clean stop."""
from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path


def is_listening(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def running_pid(pid_file: Path) -> int | None:
    """The pid written in `pid_file` when that process still exists."""
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, 0)
        return pid
    except (FileNotFoundError, ValueError, ProcessLookupError, PermissionError):
        return None


def reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)  # our own child (tests): do not leave a zombie that os.kill(pid, 0) still sees
    except ChildProcessError:
        pass


def stop(pid: int, pid_file: Path, timeout_s: float) -> None:
    """SIGTERM (a clean shutdown flushes logs and databases), SIGKILL if still there after `timeout_s`."""
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        reap(pid)
        time.sleep(0.2)
    else:
        os.kill(pid, signal.SIGKILL)
        reap(pid)
    pid_file.unlink(missing_ok=True)
