"""Run the real Pulumi CLI on a project against the emulator, like Pulumi's ProgramTest.

:class:`PulumiProject` copies a project (one of ``examples/*``, or files a test
writes) into a temporary directory, so nothing is ever written into the
repository, points its ``virtualenv`` at the test venv by absolute path and
runs ``pulumi`` there with an environment of its own:

- ``PATH`` starts with the CLI's bin directory (:func:`pulumi_bin_dir`: a
  ``pulumi`` on PATH of a supported version (:func:`supported`) with the Python
  runtime files beside it, else whatever ``scripts/install-pulumi`` prints);
- a private ``PULUMI_HOME``, a ``file://`` or ``s3://`` state backend (the S3 one
  is a bucket in the emulator, see :func:`s3_backend_url`), a passphrase, no
  update checks and no plugin downloads;
- AWS pointed at the emulator with dummy credentials (``AWS_ENDPOINT_URL``), and
  the provider's waiter made fast (``EXPORT_IMAGE_PROVIDER_WAITER``).

Every command returns a :class:`Result` (exit code, stdout, stderr);
:meth:`PulumiProject.run` raises :class:`PulumiError` with the whole output when
one fails. :meth:`PulumiProject.start` runs a command in a session of its own so
that :meth:`PulumiProject.kill` can SIGKILL it together with the language host
and the dynamic-provider process, which the CLI starts in process groups of
their own (a ``killpg`` of the CLI's group would miss them).
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = REPO_ROOT / "examples"
PULUMI_VERSION = "v3.276.0"  # what scripts/install-pulumi builds
SUPPORTED_VERSIONS = ((3, 260, 0), (4, 0, 0))  # scripts/install-pulumi's MIN_VERSION, BELOW_VERSION
IMAGE_EXPORT_TYPE = "pulumi-python:dynamic/export_image_provider:ImageExport"
PLUGIN_TYPE = "export-image:index:ImageExport"  # the provider plugin's (export_image_provider/plugin)
FAST_WAITER = '{"first_delay": 0.2, "min_delay": 0.1, "max_delay": 0.5, "near_delay": 0.2, "near_window": 5}'
REGION = "us-east-1"
DEFAULT_TIMEOUT = 300.0


def venv_dir() -> Path:
    """The virtualenv the tests run in (it has export-image-provider installed), else the repo's .venv."""
    if sys.prefix != sys.base_prefix and (Path(sys.prefix) / "bin" / "python").exists():
        return Path(sys.prefix)
    return REPO_ROOT / ".venv"


def _cli_version(pulumi: str | Path) -> str:
    with tempfile.TemporaryDirectory(prefix="pulumi-version-") as home:
        try:
            out = subprocess.run(
                [str(pulumi), "version"],
                env={**os.environ, "PULUMI_HOME": home, "PULUMI_SKIP_UPDATE_CHECK": "1"},
                capture_output=True, text=True, timeout=60,
            )
        except (OSError, subprocess.TimeoutExpired):
            return ""
    return out.stdout.strip().splitlines()[0].strip() if out.returncode == 0 and out.stdout.strip() else ""


def _has_runtime(bin_dir: Path) -> bool:
    return all(os.access(bin_dir / name, os.X_OK) for name in ("pulumi-language-python", "pulumi-resource-pulumi-python"))


def supported(version: str) -> bool:
    """``v3.260.0`` <= version < ``v4``, as scripts/install-pulumi checks."""
    found = re.match(r"v(\d+)\.(\d+)\.(\d+)", version)
    return bool(found) and SUPPORTED_VERSIONS[0] <= tuple(map(int, found.groups())) < SUPPORTED_VERSIONS[1]


@functools.lru_cache(maxsize=1)
def pulumi_bin_dir() -> Path:
    """The directory with a supported ``pulumi`` and the Python runtime files; once per session."""
    on_path = shutil.which("pulumi")
    if on_path:
        for candidate in (Path(on_path).parent, Path(on_path).resolve().parent):
            if _has_runtime(candidate) and supported(_cli_version(candidate / "pulumi")):
                return candidate
    installer = subprocess.run(
        [str(REPO_ROOT / "scripts" / "install-pulumi")], capture_output=True, text=True, cwd=REPO_ROOT
    )
    lines = installer.stdout.strip().splitlines()
    if installer.returncode != 0 or not lines:
        raise RuntimeError(
            f"scripts/install-pulumi failed (exit {installer.returncode}):\n{installer.stdout}\n{installer.stderr}"
        )
    bin_dir = Path(lines[-1])
    version = _cli_version(bin_dir / "pulumi")
    if not supported(version) or not _has_runtime(bin_dir):
        raise RuntimeError(f"{bin_dir}: pulumi reports {version!r}, want v3.260.0 up to v4 with the Python runtime")
    return bin_dir


@functools.lru_cache(maxsize=1)
def yaml_bin_dir() -> Path:
    """The directory with ``pulumi-language-yaml``: on PATH, else what ``scripts/install-pulumi --yaml`` prints."""
    on_path = shutil.which("pulumi-language-yaml")
    if on_path:
        return Path(on_path).parent
    installer = subprocess.run([str(REPO_ROOT / "scripts" / "install-pulumi"), "--yaml"],
                               capture_output=True, text=True, cwd=REPO_ROOT)
    lines = installer.stdout.strip().splitlines()
    if installer.returncode != 0 or not lines:
        raise RuntimeError(f"scripts/install-pulumi --yaml failed (exit {installer.returncode}):\n{installer.stderr}")
    return Path(lines[-1])


def plugin_path() -> str:
    """PATH for programs of the provider plugin: the CLI, the YAML host, and the venv's
    ``pulumi-resource-export-image`` (the CLI takes a plugin from PATH when nothing installed it)."""
    return os.pathsep.join([str(pulumi_bin_dir()), str(yaml_bin_dir()), str(venv_dir() / "bin"),
                            os.environ.get("PATH", "/usr/bin:/bin")])


def plugin_project(tmp: Path, endpoint: str, **kwargs: Any) -> PulumiProject:
    """A :class:`PulumiProject` whose program uses the provider plugin's ``export-image:index:ImageExport``."""
    extra_env = {"PATH": plugin_path(), **(kwargs.pop("extra_env", None) or {})}
    project = PulumiProject(tmp, endpoint, extra_env=extra_env, **kwargs)
    project.resource_type = PLUGIN_TYPE
    return project


def describe_cli() -> str:
    """Which CLI and which Python language host the tests use (``scripts/install-pulumi --describe``)."""
    described = subprocess.run(
        [str(REPO_ROOT / "scripts" / "install-pulumi"), "--describe", str(pulumi_bin_dir())],
        capture_output=True, text=True,
    )
    return described.stdout.strip() or f"unknown ({described.stderr.strip()})"


def s3_backend_url(endpoint: str, bucket: str) -> str:
    """A DIY backend in an emulator bucket, in the form this CLI's gocloud s3blob (AWS SDK v2) accepts.

    ``endpoint`` must carry its scheme: a bare ``host:port`` makes the SDK speak
    https to the emulator. ``s3ForcePathStyle`` (or ``use_path_style``) keeps the
    bucket out of the host name.
    """
    return f"s3://{bucket}?endpoint={endpoint}&s3ForcePathStyle=true&region={REGION}"


def create_bucket(endpoint: str, bucket: str) -> None:
    import boto3

    boto3.client(
        "s3", endpoint_url=endpoint, region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing"
    ).create_bucket(Bucket=bucket)


@dataclass
class Result:
    """One finished CLI command."""

    args: list[str]
    code: int
    stdout: str
    stderr: str
    seconds: float = 0.0

    def __iter__(self):  # (code, stdout, stderr) = project.pulumi(...)
        return iter((self.code, self.stdout, self.stderr))

    def __str__(self) -> str:
        return f"$ {' '.join(self.args)}\nexit {self.code} after {self.seconds:.1f}s\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"


class PulumiError(AssertionError):
    """A ``pulumi`` command ended otherwise than expected; the message holds its whole output."""

    def __init__(self, result: Result, why: str = "failed"):
        super().__init__(f"pulumi {why}:\n{result}")
        self.result = result


def session_processes(sid: int) -> list[int]:
    """Live (non-zombie) processes of session ``sid``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            if os.getsid(pid) != sid:
                continue
            with open(f"/proc/{pid}/stat") as stat:
                state = stat.read().rsplit(")", 1)[1].split()[0]
        except (ProcessLookupError, PermissionError, FileNotFoundError, IndexError):
            continue
        if state != "Z":
            found.append(pid)
    return found


def kill_session(sid: int, timeout: float = 10.0) -> None:
    """SIGKILL every process in session ``sid`` until none is left."""
    deadline = time.monotonic() + timeout
    while pids := session_processes(sid):
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"processes {pids} of session {sid} survive SIGKILL")
        time.sleep(0.05)


class PulumiProject:
    """A Pulumi project in a temporary directory, one stack, and the CLI run against the emulator.

    ``source`` is a project directory to copy (e.g. ``EXAMPLES / "basic"``);
    ``files`` (name -> text) are written on top (or alone, for a project a test
    writes inline). ``backend`` is ``"file"``, ``"s3"`` (a fresh state bucket in
    the emulator) or a full backend URL. With ``login=True`` the backend is not
    put in ``PULUMI_BACKEND_URL``: call :meth:`login` as a CI job would.
    """

    def __init__(
        self,
        tmp: Path,
        endpoint: str,
        *,
        source: Path | None = None,
        files: Mapping[str, str] | None = None,
        backend: str = "file",
        stack: str = "test",
        login: bool = False,
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        self.tmp = Path(tmp)
        self.endpoint = endpoint
        self.stack = stack
        self.dir = self.tmp / "project"
        if source is not None:
            shutil.copytree(source, self.dir, ignore=shutil.ignore_patterns("Pulumi.*.yaml", "__pycache__", ".github"))
        self.dir.mkdir(parents=True, exist_ok=True)
        for name, text in (files or {}).items():
            (self.dir / name).write_text(text)
        self._pin_virtualenv()
        self.home = self.tmp / "pulumi-home"
        self.home.mkdir(exist_ok=True)
        self.backend_url = self._backend(backend)
        self.logs = self.tmp / "logs"
        self.logs.mkdir(exist_ok=True)
        self.history: list[Result] = []
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PULUMI_", "AWS_"))}
        env.pop("VIRTUAL_ENV", None)
        env.update(
            PATH=os.pathsep.join([str(pulumi_bin_dir()), env.get("PATH", "/usr/bin:/bin")]),
            PULUMI_HOME=str(self.home),
            PULUMI_SKIP_UPDATE_CHECK="1",
            PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION="true",
            PULUMI_CONFIG_PASSPHRASE="test",
            PULUMI_SKIP_CONFIRMATIONS="1",
            AWS_ENDPOINT_URL=endpoint,
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
            AWS_REGION=REGION,
            # No ~/.aws files, and no "Response has no supported checksum" warnings
            # from the CLI's S3 client (the emulator sends no checksums).
            AWS_CONFIG_FILE=str(self.tmp / "aws-config"),
            AWS_SHARED_CREDENTIALS_FILE=str(self.tmp / "aws-credentials"),
            AWS_RESPONSE_CHECKSUM_VALIDATION="when_required",
            EXPORT_IMAGE_PROVIDER_WAITER=FAST_WAITER,
            # The program and the dynamic-provider process import this checkout.
            PYTHONPATH=str(REPO_ROOT),
            PYTHONDONTWRITEBYTECODE="1",
        )
        if not login:
            env["PULUMI_BACKEND_URL"] = self.backend_url
        env.update(extra_env or {})
        self.env = env

    # -- set-up -----------------------------------------------------------------

    def _pin_virtualenv(self) -> None:
        """Point ``runtime.options.virtualenv`` at the test venv by absolute path.

        A relative one would be wrong in the copy, and the dynamic-provider shim
        resolves it against its working directory rather than the project's.
        """
        project_file = self.dir / "Pulumi.yaml"
        text = project_file.read_text()
        if re.search(r"(?m)^runtime:\s*(?!python)\w+\s*$", text):
            return  # a YAML (or other non-Python) program: no virtualenv to pin
        pinned, count = re.subn(r"(?m)^(\s*virtualenv:\s*).*$", lambda m: m.group(1) + str(venv_dir()), text)
        if count != 1:
            raise ValueError(f"{project_file}: expected one 'virtualenv:' line, found {count}")
        project_file.write_text(pinned)

    def _backend(self, backend: str) -> str:
        if backend == "file":
            state = self.tmp / "state"
            state.mkdir(exist_ok=True)
            return f"file://{state}"
        if backend == "s3":
            bucket = f"pulumi-state-{uuid.uuid4().hex[:12]}"
            create_bucket(self.endpoint, bucket)
            self.state_bucket = bucket
            return s3_backend_url(self.endpoint, bucket)
        return backend

    def edit(self, name: str, old: str, new: str) -> None:
        """Replace the one occurrence of ``old`` in the copied ``name``."""
        path = self.dir / name
        text = path.read_text()
        if text.count(old) != 1:
            raise ValueError(f"{name}: expected exactly one {old!r}, found {text.count(old)}")
        path.write_text(text.replace(old, new))

    # -- running the CLI --------------------------------------------------------

    def pulumi(self, *args: str, timeout: float = DEFAULT_TIMEOUT, check: bool = False) -> Result:
        """``pulumi ARGS --non-interactive`` in the project directory."""
        argv = ["pulumi", *args, "--non-interactive"]
        started = time.monotonic()
        proc = subprocess.Popen(
            argv, cwd=self.dir, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            start_new_session=True,
        )
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
            result = Result(argv, proc.returncode, stdout, stderr)
        except subprocess.TimeoutExpired:
            kill_session(proc.pid)  # the CLI, and the plugins it started in process groups of their own
            stdout, stderr = proc.communicate()
            result = Result(argv, -1, stdout, stderr + f"\n(killed: still running after {timeout:g}s)")
        result.seconds = time.monotonic() - started
        self.history.append(result)
        if check and result.code != 0:
            raise PulumiError(result)
        return result

    def run(self, *args: str, check: bool = True, timeout: float = DEFAULT_TIMEOUT) -> Result:
        """:meth:`pulumi`, raising :class:`PulumiError` (with the whole output) unless it exits 0."""
        return self.pulumi(*args, timeout=timeout, check=check)

    def start(self, *args: str) -> subprocess.Popen:
        """``pulumi ARGS`` in the background, in a session of its own; output to files under ``logs``."""
        stem = self.logs / f"{len(self.history):02d}-{args[0]}"
        argv = ["pulumi", *args, "--non-interactive"]
        with open(f"{stem}.out", "w") as out, open(f"{stem}.err", "w") as err:
            proc = subprocess.Popen(argv, cwd=self.dir, env=self.env, start_new_session=True, stdout=out, stderr=err)
        proc.log_stem = stem  # type: ignore[attr-defined]
        return proc

    @staticmethod
    def output_of(proc: subprocess.Popen) -> str:
        stem = proc.log_stem  # type: ignore[attr-defined]
        return Path(f"{stem}.out").read_text() + Path(f"{stem}.err").read_text()

    @staticmethod
    def kill(proc: subprocess.Popen) -> None:
        """SIGKILL the CLI and every process it started (language host, dynamic provider)."""
        kill_session(proc.pid)
        proc.wait(timeout=10)

    # -- commands -----------------------------------------------------------------

    def login(self) -> Result:
        return self.run("login", self.backend_url)

    def stack_init(self, **config: str) -> None:
        self.run("stack", "init", self.stack)
        if config:
            self.run("config", "set-all", *(a for k, v in config.items() for a in ("--plaintext", f"{k}={v}")))

    def config_set(self, key: str, value: str, path: bool = False) -> Result:
        return self.run("config", "set", *(["--path"] if path else []), key, value)

    def up(self, *args: str, check: bool = True) -> Result:
        return self.run("up", "--yes", "--skip-preview", *args, check=check)

    def preview(self, *args: str, check: bool = True) -> Result:
        return self.run("preview", *args, check=check)

    def refresh(self, *args: str, check: bool = True) -> Result:
        return self.run("refresh", "--yes", "--skip-preview", *args, check=check)

    def destroy(self, *args: str, check: bool = True) -> Result:
        return self.run("destroy", "--yes", "--skip-preview", *args, check=check)

    def preview_json(self, *args: str) -> dict[str, Any]:
        """``pulumi preview --json``: ``steps`` (each with ``op``, ``urn``, ...) and ``changeSummary``."""
        return _json(self.run("preview", "--json", *args))

    def planned_ops(self, *args: str) -> dict[str, str]:
        """Resource name -> the step op a preview plans (``same``, ``update``, ``replace``, ``create`` ...)."""
        return {step["urn"].rsplit("::", 1)[1]: step["op"] for step in self.preview_json(*args)["steps"]}

    def stack_outputs(self) -> dict[str, Any]:
        return _json(self.run("stack", "output", "--json"))

    def stack_export(self) -> dict[str, Any]:
        return _json(self.run("stack", "export"))

    def stack_import(self, deployment: Mapping[str, Any]) -> Result:
        path = self.tmp / f"import-{uuid.uuid4().hex[:8]}.json"
        path.write_text(json.dumps(deployment))
        return self.run("stack", "import", "--file", str(path))

    resource_type = IMAGE_EXPORT_TYPE  # the ImageExport a program declares; the provider plugin's is PLUGIN_TYPE

    def resources(self, type_: str | None = None) -> dict[str, dict[str, Any]]:
        """Name -> state entry (``id``, ``inputs``, ``outputs``) of each resource of ``type_`` (an ImageExport)."""
        type_ = type_ or self.resource_type
        deployment = self.stack_export()["deployment"]
        return {
            r["urn"].rsplit("::", 1)[1]: r
            for r in deployment.get("resources") or []
            if r["type"] == type_ and not r.get("delete")
        }

    def pending_operations(self) -> list[dict[str, Any]]:
        return self.stack_export()["deployment"].get("pending_operations") or []

    @property
    def project_name(self) -> str:
        return re.search(r"(?m)^name:\s*(\S+)", (self.dir / "Pulumi.yaml").read_text()).group(1)

    def stack_resource_name(self) -> str:
        """The name in the URN of the stack's root resource (``pulumi:pulumi:Stack``)."""
        return f"{self.project_name}-{self.stack}"

    def resource_key(self, name: str) -> str:
        """What the provider tags a resource's tasks with (``export-image-provider:resource``)."""
        return f"{self.project_name}/{self.stack}/{name}"

    def teardown(self) -> None:
        """Best effort: destroy what is left and remove the stack (the emulator is shared)."""
        destroy = ("destroy", "--yes", "--skip-preview", "--continue-on-error")
        if self.pulumi(*destroy, timeout=120).code != 0:
            self.pulumi("cancel", "--yes", self.stack, timeout=60)  # a killed command's lock
            self.pulumi(*destroy, timeout=120)
        self.pulumi("stack", "rm", "--yes", "--force", self.stack, timeout=60)


def _json(result: Result) -> Any:
    try:
        return json.loads(result.stdout)
    except json.JSONDecodeError:
        raise PulumiError(result, "printed no JSON") from None


