"""Shared pytest fixtures, and the guard that fails a session which modified a tracked file."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
EMULATOR_EXPORT_SECONDS = 2.0
_TRACKED = pytest.StashKey[dict[str, str] | None]()


def tracked_changes(root: Path = REPO_ROOT) -> dict[str, str] | None:
    """Tracked files that differ from HEAD, each with its git status and a digest; None outside a git checkout."""
    try:
        listed = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                                capture_output=True, text=True, check=True, timeout=120).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    changes = {}
    for entry in listed.splitlines():
        path = entry[3:].split(" -> ")[-1].strip('"')
        file = root / path
        changes[path] = entry[:2] + (hashlib.sha256(file.read_bytes()).hexdigest() if file.is_file() else "-")
    return changes


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[_TRACKED] = tracked_changes()


@pytest.hookimpl(wrapper=True)
def pytest_sessionfinish(session: pytest.Session) -> Any:
    """Tests must not rewrite tracked files: a session that did fails, naming them (after every other finisher)."""
    result = yield
    before = session.config.stash.get(_TRACKED, None)
    after = tracked_changes() if before is not None else None
    if before is not None and after is not None:
        touched = sorted(path for path in before.keys() | after.keys() if before.get(path) != after.get(path))
        if touched:
            line = f"this test session modified tracked files (tests must not rewrite them): {', '.join(touched)}"
            reporter = session.config.pluginmanager.get_plugin("terminalreporter")
            if reporter is not None:
                reporter.ensure_newline()
                reporter.write_line(line, red=True, bold=True)
            else:
                print(line, file=sys.stderr)
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
    return result


def wait_until(predicate: Any, timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll ``predicate`` until it returns something truthy (returned) or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


class EmulatorProcess:
    """``python -m export_image_provider.emulator`` in a subprocess, driven over HTTP."""

    def __init__(self, *args: str, startup_timeout: float = 60.0):
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
        env.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "export_image_provider.emulator", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=REPO_ROOT,
        )
        self.stderr_lines: list[str] = []
        threading.Thread(target=self._drain_stderr, daemon=True).start()
        self.ready_line = self._wait_ready(startup_timeout)
        self.url = self.ready_line.split(" ", 1)[1]
        self.region = "us-east-1"

    def _drain_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr_lines.append(line)

    def _wait_ready(self, timeout: float) -> str:
        assert self.proc.stdout is not None
        result: list[str] = []
        reader = threading.Thread(target=lambda: result.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        if not result or not result[0].startswith("READY "):
            self.proc.kill()
            raise RuntimeError(f"emulator did not get ready: {result!r}\n{''.join(self.stderr_lines)}")
        return result[0].rstrip("\n")

    def client(self, service: str, region: str | None = None) -> Any:
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name=region or self.region,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def control(self, method: str, name: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.url}/_emulator/{name}", data=data, method=method)
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def set_config(self, **fields: Any) -> dict[str, Any]:
        """Change emulator config (applies to tasks created afterwards)."""
        return self.control("POST", "config", fields)

    def get_config(self) -> dict[str, Any]:
        return self.control("GET", "config")

    def reset(self, config: bool = True) -> None:
        """Drop all export tasks and call counts; with ``config`` also restore the start-up config."""
        self.control("POST", "reset", {"config": config})

    def calls(self) -> dict[str, int]:
        """AWS calls served so far by ``service:Action``, e.g. ``{"ec2:DescribeExportImageTasks": 3}``."""
        return self.control("GET", "calls")["calls"]

    def call_detail(self) -> list[dict[str, Any]]:
        """The last calls, oldest first: service, action, access_key, expected_bucket_owner, fault."""
        return self.control("GET", "calls?detail=1")["calls"]

    def fault_counts(self) -> dict[str, int]:
        """``{"throttled": n, "errors": m}`` since the last reset of the calls."""
        return self.control("GET", "calls")["faults"]

    def reset_calls(self) -> dict[str, Any]:
        """Forget call and fault counts; returns ``{"calls": ..., "faults": ...}`` from before."""
        return self.control("POST", "calls", {})

    def advance(self, seconds: float) -> float:
        """Move the emulator's clock forward; returns the total offset."""
        return self.control("POST", "advance", {"seconds": seconds})["offset"]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise


@pytest.fixture(scope="session")
def emulator() -> Any:
    """One emulator subprocess for the session (export_seconds=2); must exit 0 on SIGTERM."""
    emu = EmulatorProcess("--export-seconds", str(EMULATOR_EXPORT_SECONDS))
    try:
        yield emu
    finally:
        code = emu.stop()
    assert code == 0, "".join(emu.stderr_lines)
