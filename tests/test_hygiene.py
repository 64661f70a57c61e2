"""The conftest guard: a pytest session that modifies a tracked file fails, naming it.

Each case runs pytest in a subprocess on a throw-away git checkout holding a copy
of tests/conftest.py, so the repository's own files are never touched.
"""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from conftest import REPO_ROOT

GIT = ["git", "-c", "user.email=tests@example.com", "-c", "user.name=tests", "-c", "commit.gpgsign=false"]


def checkout(root, *, git: bool = True, test: str) -> None:
    (root / "tests").mkdir()
    shutil.copy(REPO_ROOT / "tests" / "conftest.py", root / "tests" / "conftest.py")
    (root / "data.txt").write_text("as committed\n")
    (root / "tests" / "test_case.py").write_text(test)
    if git:
        subprocess.run([*GIT, "init", "-q"], cwd=root, check=True)
        subprocess.run([*GIT, "add", "-A"], cwd=root, check=True)
        subprocess.run([*GIT, "commit", "-q", "-m", "start"], cwd=root, check=True)


def run_pytest(root) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_case.py"],
                          cwd=root, capture_output=True, text=True, timeout=300)


WRITES = "from pathlib import Path\n\ndef test_writes():\n    Path('data.txt').write_text('rewritten\\n')\n"
READS = "from pathlib import Path\n\ndef test_reads():\n    assert Path('data.txt').read_text()\n"


def test_a_session_that_rewrites_a_tracked_file_fails_naming_it(tmp_path):
    checkout(tmp_path, test=WRITES)
    result = run_pytest(tmp_path)
    assert result.returncode == pytest.ExitCode.TESTS_FAILED, result.stdout + result.stderr
    assert "1 passed" in result.stdout
    assert "this test session modified tracked files (tests must not rewrite them): data.txt" in result.stdout


def test_a_file_already_modified_before_the_session_counts_only_if_the_session_changes_it(tmp_path):
    checkout(tmp_path, test=READS)
    (tmp_path / "data.txt").write_text("edited by the developer\n")
    assert run_pytest(tmp_path).returncode == 0
    (tmp_path / "tests" / "test_case.py").write_text(WRITES)
    assert run_pytest(tmp_path).returncode == pytest.ExitCode.TESTS_FAILED


def test_outside_a_git_checkout_the_guard_stays_out_of_the_way(tmp_path):
    checkout(tmp_path, git=False, test=WRITES)
    assert run_pytest(tmp_path).returncode == 0
