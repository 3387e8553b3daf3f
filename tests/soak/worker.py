"""A real `hub worker` process for tests: started in its own process group, killed or stopped by it.

Every test that starts one stops it in a `finally` (or uses `with WorkerProcess(...)`): `stop()` sends
SIGTERM to the group, waits, and falls back to SIGKILL; `kill()` is the crash (SIGKILL, no clean-up).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path


class WorkerProcess:
    def __init__(self, env: dict[str, str], log_dir: Path, name: str = "worker"):
        # `hub worker` refuses the demo data key; every worker of a test shares this one (one database)
        self.env = {**os.environ, "HUB_METRICS_PORT": "0", "HUB_DATA_KEYS": "c29hay10ZXN0LWRhdGEta2V5LW5vdC1hLXNlY3JldC0=", **env}
        self.log_dir = Path(log_dir)
        self.name = name
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self.kills = 0
        self.exits: list[int] = []  # exit codes of runs that ended other than by our SIGKILL

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, "the previous worker is still running"
        log = open(self.log_dir / f"{self.name}-{self.starts:03d}.log", "wb")
        try:
            self.proc = subprocess.Popen([sys.executable, "-m", "hub.cli", "worker"], env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        finally:
            log.close()  # the child keeps its own descriptor
        self.starts += 1

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def kill(self) -> None:
        """SIGKILL the worker's process group (the crash), and reap it."""
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
            self.kills += 1
        elif self.proc is not None:
            self.exits.append(self.proc.returncode)

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM and wait; SIGKILL if it does not stop within `timeout`."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
            except ProcessLookupError:
                pass

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.log_dir.glob(f"{self.name}-*.log")))

    def __enter__(self) -> "WorkerProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
