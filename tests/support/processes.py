"""Run the real API and worker as subprocesses, as they run in production."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

from tests.support.services import free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]


class Service:
    """One child process with its own environment and log file: `python -m module` of this
    interpreter, where the workspace installs every distribution."""

    def __init__(self, module: str, env: dict[str, str]) -> None:
        self.module = module
        self.log_path = Path(tempfile.mkstemp(prefix=f"{module}-", suffix=".log")[1])
        full_env = dict(os.environ)
        full_env.update(env)
        full_env["PYTHONUNBUFFERED"] = "1"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module],
            cwd=ROOT,
            env=full_env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, signum: int) -> None:
        if self.alive():
            self.proc.send_signal(signum)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout)

    def stop(self, timeout: float = 30.0) -> int | None:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def console_script(name: str) -> str:
    """The path of an installed console script (`conversation-events-keys`, ...) of this venv."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise AssertionError(f"{name} is not installed beside {sys.executable} (scripts/bootstrap)")
    return str(path)


def common_env(database_url: str, amqp_url: str, exchange: str, queue: str) -> dict[str, str]:
    return {
        "CE_DATABASE_URL": database_url,
        "CE_AMQP_URL": amqp_url,
        "CE_EXCHANGE_NAME": exchange,
        "CE_QUEUE_NAME": queue,
        "CE_LOG_LEVEL": "INFO",
    }


def start_api(
    env: dict[str, str], api_key: str, *, port: int | None = None, **extra: str
) -> tuple[Service, str]:
    """The API on `port` (default: a free one), once its /readyz answers 200."""
    port = port or free_port()
    service = Service(
        "conversation_events_api",
        {**env, "CE_API_KEYS": api_key, "CE_PORT": str(port), "CE_HOST": "127.0.0.1", **extra},
    )
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        if not service.alive():
            raise AssertionError(f"API exited:\n{service.log()}")
        try:
            return httpx.get(f"{base}/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    # Generous: a loaded two-core machine can take this long to import and connect.
    wait_for(ready, timeout=90, what="API /readyz")
    return service, base


def start_worker(env: dict[str, str], **extra: str) -> Service:
    return Service(
        "conversation_events_worker",
        {**env, "CE_WORKER_HTTP_PORT": str(free_port()), **extra},
    )
