"""Per-mutant test selection for ``scripts/mutation``: run only the tests that execute the mutated lines.

Not a test module. ``tests/mutation_report.py`` runs each module's pytest selections once under
coverage.py with one context per test (pytest-cov's ``--cov-context=test``) and saves, beside the
pristine source, which tests execute which line of the module (``build_map``). cosmic-ray then runs
``python tests/mutation_select.py MAP`` as the test command of every mutant: it diffs the mutated
file against the pristine copy, and runs, in the selections' order and stopping at the first
failure, the tests recorded on the changed lines (``main``).

Why this is the same verdict as running the whole selection, only faster: a test that never
executes a line cannot see a change to it, as long as it runs the module in its own process, which
the selections' tests do (the provider is called directly; only the emulator, which is not mutated,
is a subprocess). Two cases are not narrowed:

* a line executed only at import time (module constants, defaults, decorators, class bodies) is
  recorded under no test: every test may depend on it, so the whole selection runs;
* lines are taken as coverage.py records them, by the first line of their statement (a mutant on
  the third line of a signature or a dict belongs to the statement's first);
* a line no test executes at all gives no test to run: the mutant survives, reported as such
  and marked (``NOT_EXECUTED``), which is what the whole selection would report unless a test ran the module
  in a child process, in which case this errs against the score, never for it.

A selection that runs the module in a child process (through the Pulumi CLI) cannot be narrowed by
this process's coverage: it starts with ``WHOLE`` and runs entire for every mutant the narrowed tests
did not kill.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

WHOLE = "--whole"  # first word of a selection that is never narrowed
# A mutant that makes a wait endless fails its test after 3 minutes rather than the suite's 10 (pytest-timeout);
# the unmutated selections, run with the same limit, must pass (build_map).
PYTEST = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "--timeout=180"]
NOT_EXECUTED = "mutation_select: no test executes line(s)"  # how the report tells such survivors apart


def collected(selection: list[str], cwd: Path) -> list[str]:
    """The node ids of a pytest selection, in the order pytest runs them."""
    out = subprocess.run([*PYTEST, "--collect-only", *selection], cwd=cwd, capture_output=True, text=True,
                         check=True).stdout
    return [line for line in out.splitlines() if "::" in line]


def build_map(module: str, selections: list[list[str]], scratch: Path, env: dict[str, str]) -> tuple[Path, float]:
    """Run the selections under coverage with per-test contexts; write the map and return its path, and
    how long the selections take unmutated (under coverage; a cached run counts its own time)."""
    import coverage

    source = scratch / "export_image_provider" / f"{module}.py"
    order: list[str] = []
    lines: dict[int, set[str]] = {}
    seconds = 0.0
    for selection in selections:
        if selection[0] == WHOLE:
            started = time.monotonic()
            subprocess.run([*PYTEST, *selection[1:]], cwd=scratch, check=True, stdout=subprocess.DEVNULL, env=env)
            seconds += time.monotonic() - started
            continue
        order += collected(selection, scratch)
        # the whole package is measured, so modules sharing a selection in one run share its coverage run
        data_path = scratch / f".coverage.{hashlib.sha256(json.dumps(selection).encode()).hexdigest()[:12]}"
        timing = data_path.with_name(data_path.name + ".seconds")
        if not timing.exists():
            started = time.monotonic()
            subprocess.run([*PYTEST, "--cov=export_image_provider", "--cov-context=test", "--cov-report=", *selection],
                           cwd=scratch, check=True, stdout=subprocess.DEVNULL,
                           env={**env, "COVERAGE_FILE": str(data_path)})
            timing.write_text(str(time.monotonic() - started))
        seconds += float(timing.read_text())
        data = coverage.CoverageData(basename=str(data_path))
        data.read()
        measured = next((f for f in data.measured_files() if Path(f).resolve() == source.resolve()), None)
        if measured is None:
            continue
        for line, contexts in data.contexts_by_lineno(measured).items():
            lines.setdefault(line, set()).update(context.rsplit("|", 1)[0] for context in contexts)
    rank = {node: i for i, node in enumerate(order)}
    path = scratch / f".mutation-map.{module}.json"
    path.write_text(json.dumps({
        "module": str(source.relative_to(scratch)),
        "pristine": source.read_text(),
        "selections": selections,
        "order": order,
        # "" is coverage's context for code run outside any test (import time)
        "lines": {str(line): sorted(tests, key=lambda t: rank.get(t, len(rank))) for line, tests in lines.items()},
    }))
    return path, seconds


def changed(pristine: str, mutated: str) -> list[int]:
    """Line numbers (1-based, of the pristine source) the mutation touches."""
    old, new = pristine.splitlines(), mutated.splitlines()
    touched: list[int] = []
    for tag, i1, i2, _, _ in difflib.SequenceMatcher(None, old, new, autojunk=False).get_opcodes():
        if tag != "equal":
            touched += range(i1 + 1, max(i2, i1 + 1) + 1)
    return touched


def statements(pristine: str, touched: list[int]) -> set[int] | None:
    """The first lines of the statements holding ``touched``, as coverage.py records them; None when
    a touched line belongs to no statement coverage.py measures (it cannot say who runs it)."""
    from coverage.parser import PythonParser

    parser = PythonParser(text=pristine)
    parser.parse_source()
    first = {parser.first_line(line) for line in touched}
    return first if first <= parser.statements else None


def tests_for(mapping: dict, touched: list[int]) -> list[str] | None:
    """The tests to run, in order; None for "the whole selection" (a line run at import time, or
    one coverage.py does not measure)."""
    lines = statements(mapping["pristine"], touched)
    if lines is None:
        return None
    chosen: set[str] = set()
    for line in lines:
        tests = mapping["lines"].get(str(line), [])
        if "" in tests:
            return None
        chosen.update(tests)
    rank = {node: i for i, node in enumerate(mapping["order"])}
    return sorted(chosen, key=lambda t: rank.get(t, len(rank)))


def main(map_path: str) -> int:
    mapping = json.loads(Path(map_path).read_text())
    root = Path(map_path).parent
    mutated = (root / mapping["module"]).read_text()
    try:
        compile(mutated, mapping["module"], "exec")
    except SyntaxError as error:  # the module no longer imports: every test that imports it fails
        print(f"mutation_select: the mutant does not compile: {error}")
        return 1
    touched = changed(mapping["pristine"], mutated)
    tests = tests_for(mapping, touched)
    whole = [selection[1:] for selection in mapping["selections"] if selection[0] == WHOLE]
    if tests is None:
        runs = [selection[1:] if selection[0] == WHOLE else selection for selection in mapping["selections"]]
    else:
        runs = ([tests] if tests else []) + whole
    if not runs:
        print(f"{NOT_EXECUTED} {touched}")  # cosmic-ray keeps the command's stdout only
    for selection in runs:
        code = subprocess.run([*PYTEST, *selection], cwd=root, stdout=subprocess.DEVNULL).returncode
        if code:
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
