"""Mutation testing with cosmic-ray; its results and ``tests/MUTATION.md`` are kept by ``tests/mutation_results.py``.

Run by ``scripts/mutation [MODULE ...]``; not part of CI and not a test module.

Why cosmic-ray and a scratch copy: cosmic-ray runs a test command per mutant in a fresh process,
so tests that start the emulator subprocess work unchanged. Each module has its pytest selections
(``MODULES``); of those, each mutant runs only the tests that execute the lines it changes
(``tests/mutation_select.py``, from one coverage run per module), which is the same verdict in a
fraction of the time. It writes each mutant into the file it mutates; here that file lives in a
throw-away copy of the package and tests (made with ``git ls-files``, so uncommitted edits are
tested too), imported through ``PYTHONPATH``. The checkout itself is never written, so an
interrupted run cannot leave a mutant behind. Each module's run is kept in ``tests/mutation/<module>.json``
(tracked, with the digest of the source it mutated, so a fresh checkout has every module's last run
and a run of one module keeps the others'); ``tests/MUTATION.md`` is rendered from all of them.

A survivor is either equivalent (no input can tell it apart) or a test gap. The verdicts of the
equivalent ones are kept by hand in ``tests/mutation_equivalents.toml``, keyed by module and the
source line before and after the mutation (not line numbers, which move); a survivor without a
verdict there is reported as a test gap.
"""

from __future__ import annotations

import argparse
import ast
import datetime
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

PYTEST = "python -m pytest -x -q -p no:cacheprovider"  # as shown in the report

# One natural mutation per site, like mutmut's: not every operator into every other one (which
# mostly adds mutants any test kills), and not the random VariableReplacer/VariableInserter.
KEEP_OPERATORS = {
    "core/ReplaceBinaryOperator_" + pair for pair in (
        "Add_Sub", "Sub_Add", "Mul_Div", "Div_Mul", "FloorDiv_Div", "Mod_Div", "Pow_Mul",
        "BitOr_BitAnd", "BitAnd_BitOr", "BitXor_BitOr", "LShift_RShift", "RShift_LShift")
} | {
    "core/ReplaceComparisonOperator_" + pair for pair in (
        "Eq_NotEq", "NotEq_Eq", "Lt_LtE", "LtE_Lt", "Gt_GtE", "GtE_Gt", "Is_IsNot", "IsNot_Is")
} | {
    "core/ReplaceUnaryOperator_Delete_Not", "core/ReplaceUnaryOperator_USub_UAdd",
    "core/AddNot", "core/ReplaceTrueWithFalse", "core/ReplaceFalseWithTrue",
    "core/ReplaceAndWithOr", "core/ReplaceOrWithAnd", "core/ReplaceBreakWithContinue",
    "core/ReplaceContinueWithBreak", "core/ExceptionReplacer", "core/NumberReplacer",
    "core/ZeroIterationForLoop", "core/RemoveDecorator",
}


def chain(selections: list[list[str]]) -> str:
    """The selections as one shell line (for the report): each in turn, stopping at the first failure."""
    return " && ".join(f"{PYTEST} {shlex.join(selection)}" for selection in selections).replace(WHOLE + " ", "")


from mutation_results import (ANNOTATION_SKIP, EQUIVALENTS, REPO_ROOT, REPORT, RESULTS, UNSAMPLED,  # noqa: E402
                              ModuleResult, Mutant, changed_lines, extend, judge, load, merge, render, save, source_digest)
from mutation_select import NOT_EXECUTED, WHOLE, build_map  # noqa: E402 - beside this file

# Per module: the in-process tests that exercise it, cheapest and most telling first (each mutant
# runs those of them that execute its lines, in this order, and stops at the first failure).
PROVIDER_TESTS = [["tests/test_aws_gateway.py"], ["tests/test_lifecycle_steps.py"],
                  ["tests/test_aws_corpus.py"], ["tests/test_provider.py"], ["tests/test_lifecycle_orders.py"],
                  ["tests/test_emulator_provider.py"], ["tests/test_object_outputs.py"],
                  ["tests/test_stack_config.py", "-k", "not engine_path and not cli_path"]]
MODULES = {
    "spec": [["tests/test_spec.py"], [WHOLE, "tests/test_bad_input.py", "-k", "preview"]],  # through the CLI
    "slots": [["tests/test_slots.py"]],
    "waiter": [["tests/test_waiter.py"]],
    "ownership": PROVIDER_TESTS,
    "errors": PROVIDER_TESTS,
    "lifecycle": PROVIDER_TESTS,
    "aws": PROVIDER_TESTS,
    # partial state needs the engine: its one test through the CLI runs for what the others leave alive
    "provider": PROVIDER_TESTS + [
        [WHOLE, "tests/test_cli_orders.py::test_an_interrupted_create_leaves_its_task_in_state[up]"]],
}


def scratch_copy(dest: Path) -> None:
    """Copy the tracked (and modified) files of the package, tests, IAM policies and README into ``dest``."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard",
                             "export_image_provider", "tests", "policies", "pyproject.toml", "README.md"],
                            cwd=REPO_ROOT, capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = REPO_ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)


def run(args: list[str], cwd: Path, env: dict[str, str]) -> None:
    subprocess.run(args, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL)


def annotation_spans(source: str) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Where a module's annotations are, if it never evaluates them (``from __future__ import annotations``)."""
    tree = ast.parse(source)
    if not any(isinstance(node, ast.ImportFrom) and node.module == "__future__"
               and any(alias.name == "annotations" for alias in node.names) for node in tree.body):
        return []
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.arg | ast.AnnAssign) and node.annotation is not None:
            found.append(node.annotation)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.returns is not None:
            found.append(node.returns)
    return [((n.lineno, n.col_offset), (n.end_lineno, n.end_col_offset)) for n in found]


def skip(session: Path, keep: set[tuple[str, int]] | None, spans: list, sample: int | None = None,
         seed: str = "", rest: bool = False) -> None:
    """Mark as skipped every pending mutant that changes only an annotation; with ``keep``, every
    mutant whose (operator, line) is not in it; with ``sample``, all but that many of the rest, drawn
    at random (seeded by ``seed``, so a rerun draws the same ones); with ``rest`` too, the drawn ones."""
    import random

    from cosmic_ray.work_db import use_db
    from cosmic_ray.work_item import WorkerOutcome, WorkResult

    def annotation_only(item) -> bool:
        start, end = tuple(item.mutations[0].start_pos), tuple(item.mutations[0].end_pos)
        return any(start >= first and end <= last for first, last in spans)

    with use_db(str(session)) as db:
        pending = sorted(db.pending_work_items, key=lambda item: (tuple(item.mutations[0].start_pos),
                                                                  item.mutations[0].operator_name,
                                                                  item.mutations[0].occurrence))
        runnable = [item for item in pending if not annotation_only(item)]
        drawn = None
        if sample is not None and sample < len(runnable):
            drawn = {item.job_id for item in random.Random(seed).sample(runnable, sample)}
        for item in pending:
            mutation = item.mutations[0]
            if annotation_only(item):
                why = ANNOTATION_SKIP
            elif keep is not None and (mutation.operator_name, mutation.start_pos[0]) not in keep:
                why = "not a survivor of the last run"
            elif drawn is not None and (item.job_id in drawn) == rest:
                why = UNSAMPLED if not rest else "run by the earlier sample"
            else:
                continue
            db.set_result(item.job_id, WorkResult(output=why, worker_outcome=WorkerOutcome.SKIPPED))


def mutate(module: str, scratch: Path, env: dict[str, str], previous: ModuleResult | None = None,
           budget: float | None = None, sample: int | None = None, rest: bool = False) -> ModuleResult:
    """Run cosmic-ray on one module; with ``previous``, only on its survivors (tests added since, source
    unchanged), or with ``rest`` on the mutants its ``--sample`` run left out."""
    bin_dir = Path(sys.executable).parent
    selections = MODULES[module]
    source = scratch / "export_image_provider" / f"{module}.py"
    all_operators = subprocess.run([bin_dir / "cosmic-ray", "operators"], capture_output=True, text=True,
                                   check=True).stdout.split()
    excluded = [f"{name}$" for name in all_operators if name not in KEEP_OPERATORS]
    mapping, baseline = build_map(module, selections, scratch, env)  # also the unmutated run: it must pass
    command = f"{sys.executable} tests/mutation_select.py {mapping}"
    config = scratch / f"cosmic-ray.{module}.toml"
    config.write_text(
        "[cosmic-ray]\n"
        f"module-path = {json.dumps(f'export_image_provider/{module}.py')}\n"
        f"timeout = {max(60.0, round(baseline * 4))}\n"
        "excluded-modules = []\n"
        f"test-command = {json.dumps(command)}\n"
        "[cosmic-ray.distributor]\nname = \"local\"\n"
        "[cosmic-ray.filters.operators-filter]\n"
        f"exclude-operators = {json.dumps(excluded)}\n")
    session = scratch / f"{module}.sqlite"
    run([bin_dir / "cosmic-ray", "init", config, session], scratch, env)
    run([bin_dir / "cr-filter-operators", session, config], scratch, env)
    keep = None
    if previous is not None and rest:
        sample = len(previous.mutants) + previous.not_run
    elif previous is not None:
        keep = {(m.operator, m.line) for m in previous.counted("survived") if not m.verdict}
    skip(session, keep, annotation_spans(source.read_text()), sample, seed=module, rest=rest)
    started = time.monotonic()
    try:
        subprocess.run([bin_dir / "cosmic-ray", "exec", config, session], cwd=scratch, env=env,
                       stdout=subprocess.DEVNULL, timeout=budget * 60 if budget else None)
    except subprocess.TimeoutExpired:
        print(f"mutation: {module}: stopped after the budget of {budget} min", file=sys.stderr)
    result = collect(module, chain(selections), session, time.monotonic() - started, baseline)
    result.source_sha256 = source_digest(source)
    if previous is not None and rest:
        return extend(result, previous)
    return merge(result, previous) if previous is not None else result


def collect(module: str, command: str, session: Path, seconds: float, baseline: float) -> ModuleResult:
    """The outcomes recorded in a cosmic-ray session (mutants still pending are counted as not run)."""
    dump = subprocess.run([Path(sys.executable).parent / "cosmic-ray", "dump", session],
                          capture_output=True, text=True, check=True).stdout
    finished = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    result = ModuleResult(module, command, seconds, baseline, finished)
    for line in dump.splitlines():
        item, outcome = json.loads(line)
        if outcome and outcome["worker_outcome"] == "skipped":
            result.annotation_only += outcome.get("output") == ANNOTATION_SKIP
            result.unsampled += outcome.get("output") == UNSAMPLED
            continue
        if not outcome:
            result.not_run += 1
            continue
        mutation = item["mutations"][0]
        diff = outcome.get("diff") or ""
        before, after = changed_lines(diff)
        state = outcome["test_outcome"] if outcome["worker_outcome"] == "normal" else outcome["worker_outcome"]
        result.mutants.append(Mutant(item["job_id"], mutation["operator_name"], mutation["start_pos"][0],
                                     before, after, diff, state,
                                     not_executed=NOT_EXECUTED in (outcome.get("output") or "")))
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", metavar="MODULE", help=f"default: all of {', '.join(MODULES)}")
    parser.add_argument("--survivors", action="store_true",
                        help="rerun only the last run's survivors (after adding tests; the module must be unchanged)")
    parser.add_argument("--budget", type=float, metavar="MINUTES",
                        help="stop each module after this long; the mutants not run are reported as such")
    parser.add_argument("--sample", type=int, metavar="N",
                        help="run N mutants per module drawn at random (seeded by the module's name), not all")
    parser.add_argument("--rest", action="store_true",
                        help="run the mutants the module's last --sample run left out, completing it")
    parser.add_argument("--session", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--report-only", action="store_true", help="rewrite the report from the last runs, run nothing")
    args = parser.parse_args()
    unknown = [m for m in args.modules if m not in MODULES]
    if unknown:
        parser.error(f"unknown module {', '.join(unknown)}: choose from {', '.join(MODULES)}")
    verdicts = tomllib.loads(EQUIVALENTS.read_text())["equivalent"]
    with tempfile.TemporaryDirectory(prefix="mutation-") as tmp:
        scratch = Path(tmp)
        scratch_copy(scratch)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(scratch), os.environ.get("PYTHONPATH")]))}
        for module in [] if args.report_only else args.modules or list(MODULES):
            print(f"mutation: {module}: {MODULES[module]}", file=sys.stderr, flush=True)
            previous = load(module) if args.survivors or args.rest else None
            if (args.survivors or args.rest) and previous is None:
                parser.error(f"--survivors/--rest: {module} has no earlier run in tests/{RESULTS.name}/")
            if args.rest and not previous.unsampled:
                parser.error(f"--rest: the last run of {module} was not a --sample run")
            module_path = REPO_ROOT / "export_image_provider" / f"{module}.py"
            if previous is not None and previous.source_sha256 != source_digest(module_path):
                parser.error(f"--survivors/--rest: export_image_provider/{module}.py changed since its last run: "
                             "run it whole")
            if previous is not None and not args.rest:
                judge(previous, verdicts)  # equivalent survivors are not rerun: no test can kill them
            if args.session:
                started = (args.session.parent / f"cosmic-ray.{module}.toml").stat().st_mtime
                result = collect(module, MODULES[module], args.session, time.time() - started, 0.0)
                result.note = f"recorded from the session of a run still going, {result.seconds / 60:.0f} min in"
            else:
                result = mutate(module, scratch, env, previous, args.budget, args.sample, args.rest)
            save(result)
            judge(result, verdicts)
            survived = result.counted("survived")
            print(f"mutation: {module}: {len(result.mutants)} mutants, {len(result.counted('killed'))} killed, "
                  f"{len(survived)} survived ({sum(1 for m in survived if m.verdict)} equivalent) "
                  f"in {result.seconds / 60:.1f} min", file=sys.stderr, flush=True)
    results = [r for r in map(load, MODULES) if r is not None]
    for result in results:
        judge(result, verdicts)
    REPORT.write_text(render(results))
    print(f"mutation: wrote {REPORT.relative_to(REPO_ROOT)} ({', '.join(r.module for r in results)})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
