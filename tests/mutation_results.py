"""What ``scripts/mutation`` keeps of its runs: the results per module (``tests/mutation/<module>.json``),
the verdicts of equivalent survivors, and ``tests/MUTATION.md`` rendered from them.

Apart from ``tests/mutation_report.py``, which runs cosmic-ray, so that reading and rendering
results never needs a run (``--report-only``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

REPORT = REPO_ROOT / "tests" / "MUTATION.md"
EQUIVALENTS = REPO_ROOT / "tests" / "mutation_equivalents.toml"
RESULTS = REPO_ROOT / "tests" / "mutation"  # each module's last run, tracked


@dataclass
class Mutant:
    job: str
    operator: str
    line: int
    before: str
    after: str
    diff: str
    outcome: str
    verdict: str = ""
    not_executed: bool = False  # survived because no test of the selection executes its lines


@dataclass
class ModuleResult:
    module: str
    command: str
    seconds: float
    baseline: float
    finished: str
    mutants: list[Mutant] = field(default_factory=list)
    not_run: int = 0
    note: str = ""
    before: str = ""
    source_sha256: str = ""  # of the module as mutated: the report marks a run of since-changed source stale
    annotation_only: int = 0  # mutants of annotations only, not run (see ANNOTATION_ONLY)
    unsampled: int = 0  # with --sample: mutants left out of the sample

    def counted(self, outcome: str) -> list[Mutant]:
        return [m for m in self.mutants if m.outcome == outcome]


def source_digest(path: Path) -> str:
    """What a run records of the source it mutated, so the report can tell a stale run."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def changed_lines(diff: str) -> tuple[str, str]:
    removed = [line[1:].strip() for line in diff.splitlines() if line.startswith("-") and not line.startswith("---")]
    added = [line[1:].strip() for line in diff.splitlines() if line.startswith("+") and not line.startswith("+++")]
    return " / ".join(removed), " / ".join(added)


ANNOTATION_ONLY = ("only a type annotation changes, and the module has `from __future__ import annotations`: "
                   "annotations stay unevaluated strings (nothing in the package calls get_type_hints)")


ANNOTATION_SKIP = "annotation only: not run"
UNSAMPLED = "not in the sample"


def extend(rest: ModuleResult, sampled: ModuleResult) -> ModuleResult:
    """A ``--sample`` run completed by a ``--rest`` run of the mutants it left out: the whole module's run."""
    rest.mutants = sampled.mutants + rest.mutants
    rest.not_run += sampled.not_run
    rest.seconds += sampled.seconds
    rest.annotation_only, rest.unsampled = sampled.annotation_only, 0
    rest.note = (f"the sample of {len(sampled.mutants) + sampled.not_run} run {sampled.finished}"
                 + (f" ({sampled.note})" if sampled.note else "")
                 + f", completed {rest.finished} by `--rest` with the other {len(rest.mutants) - len(sampled.mutants)}")
    return rest


def merge(rerun: ModuleResult, previous: ModuleResult) -> ModuleResult:
    """The previous run with its survivors' outcomes replaced by the rerun's (tests were only added)."""
    by_change = {(m.operator, m.line, m.before, m.after): m for m in rerun.mutants}
    rerun.mutants = [by_change.get((m.operator, m.line, m.before, m.after), m) for m in previous.mutants]
    rerun.note = (f"{previous.note}; then " if previous.note else "") + (
                  f"survivors not judged equivalent of the run of {previous.finished} "
                  f"({sum(1 for m in previous.counted('survived') if not m.verdict)}) rerun "
                  f"{rerun.finished} in {rerun.seconds / 60:.1f} min after tests were added")
    rerun.seconds, rerun.finished = previous.seconds, previous.finished
    rerun.not_run, rerun.annotation_only, rerun.unsampled = previous.not_run, previous.annotation_only, previous.unsampled
    rerun.before = previous.before or f"{len(previous.counted('killed'))} killed of {len(previous.mutants)}"
    return rerun


def judge(result: ModuleResult, verdicts: list[dict[str, str]]) -> None:
    for mutant in result.counted("survived"):
        mutant.verdict = ""
        for verdict in verdicts:
            if (verdict["module"], verdict["before"], verdict["after"]) == (result.module, mutant.before, mutant.after):
                mutant.verdict = verdict["why"]


def render(results: list[ModuleResult]) -> str:
    out = [
        "# Mutation testing",
        "",
        f"Written by `scripts/mutation` with cosmic-ray; not part of CI. Each mutant is one small",
        "change to one module (operators: one natural replacement per site, see `KEEP_OPERATORS` in",
        "`tests/mutation_report.py`), run against that module's test selection below. A mutant is",
        "*killed* when the selection fails (or times out), *survives* when it passes. A survivor is",
        "*equivalent* when no input can tell it from the original (the reason is given, from",
        "`tests/mutation_equivalents.toml`); any other survivor is a test gap. Each mutant runs only",
        "the tests of the selection that execute the lines it changes (`tests/mutation_select.py`);",
        "a survivor whose lines no test executes is marked *not executed*. Mutants that change only",
        "an annotation are not run: " + ANNOTATION_ONLY + ".",
        "",
        "| module | mutants run | killed | survived | equivalent | killed / all | killed / non-equivalent "
        "| wall time | annotation only | not run |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        total = len(r.mutants)
        killed = len(r.counted("killed"))
        survived = r.counted("survived")
        equivalent = sum(1 for m in survived if m.verdict)
        useful = total - equivalent
        out.append(f"| {r.module} | {total} | {killed} | {len(survived)} | {equivalent} | "
                   f"{killed / total if total else 0:.1%} | {killed / useful if useful else 1:.1%} | "
                   f"{r.seconds / 60:.1f} min | {r.annotation_only} | {r.not_run or ''} |")
    for r in results:
        out += ["", f"## {r.module}", "",
                f"Run {r.finished}; test command (unmutated run {f'{r.baseline:.0f} s' if r.baseline else 'not timed'}, "
                f"mutants {r.seconds / 60:.1f} min):", "",
                f"    {r.command}", ""]
        if r.source_sha256 != source_digest(REPO_ROOT / "export_image_provider" / f"{r.module}.py"):
            out += [f"**Stale**: export_image_provider/{r.module}.py has changed since this run; run "
                    f"`scripts/mutation {r.module}` again.", ""]
        if r.note:
            out += [f"Note: {r.note}" + (f"; before that: {r.before}." if r.before else "."), ""]
        if r.unsampled:
            out += [f"Sample: {len(r.mutants) + r.not_run} of the {len(r.mutants) + r.not_run + r.unsampled} mutants "
                    f"(not annotation-only), drawn at random with seed {r.module!r} (`--sample`); the score "
                    "estimates the module's.", ""]
        if r.not_run:
            out += [f"Partial: {r.not_run} mutants were not run (the run was stopped); the score covers the rest.", ""]
        other = [m for m in r.mutants if m.outcome not in ("killed", "survived")]
        if other:
            out += [f"Not run to an outcome: {len(other)} ({', '.join(sorted({m.outcome for m in other}))}).", ""]
        survived = r.counted("survived")
        if not survived:
            out.append("No survivors.")
        for m in sorted(survived, key=lambda m: m.line):
            verdict = f"**equivalent**: {m.verdict}" if m.verdict else "**not equivalent: test gap**"
            if m.not_executed:
                verdict += " (not executed by any test of the selection)"
            out += [f"- line {m.line}, `{m.operator}`: {verdict}", "", "  ```diff",
                    *[f"  {line}" for line in m.diff.splitlines() if not line.startswith(("---", "+++"))],
                    "  ```", ""]
    return "\n".join(out).rstrip() + "\n"


def save(result: ModuleResult) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{result.module}.json").write_text(json.dumps(asdict(result), indent=1) + "\n")


def load(module: str) -> ModuleResult | None:
    path = RESULTS / f"{module}.json"
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    data["mutants"] = [Mutant(**m) for m in data["mutants"]]
    return ModuleResult(**data)
