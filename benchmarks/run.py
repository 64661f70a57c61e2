"""Run the measurements of issue 4 against the emulator with the real Pulumi CLI; write the table.

    scripts/benchmark                  # all of them (about 25 minutes on 2 cores)
    scripts/benchmark polling limit    # some: parallelism limit polling refresh overhead
    scripts/benchmark --quick          # a quick subset (polling on the simulated clock, a small limit run)

The table goes to stdout and into benchmarks/README.md, between its markers:
rows of the sections measured replace the rows of the same sections, the
others are kept, and each row says when and how (full or quick) it was
measured. ``--no-write`` leaves the README alone.

Each figure is a ratio or a count compared with a baseline measured in the same
run, so the numbers hold on a noisy machine:

- parallelism: ``pulumi up`` of 20 exports / of 1 export (both 20 s exports, 20 slots);
  baseline: the same 20 with Pulumi's stock 4-worker provider pool.
- limit: 20 exports through 5 slots / ceil(20/5) export durations; baseline: the
  same stack one export after another (``pulumi up --parallel 1``), run too.
- polling: Describe calls per hour of export and the lag to notice completion,
  for every progress shape of the emulator, 5 min to 4 h on a simulated clock
  and 60 s on the wall clock; baseline: a loop that sleeps 30 s between describes.
- refresh: DescribeExportImageTasks calls for ``pulumi refresh`` of 50 exports;
  baseline: the same refresh with batching off.
- overhead: ``pulumi preview`` with no changes of 50 exports / of 50 no-op
  dynamic resources.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from conftest import EmulatorProcess  # noqa: E402
from pulumi_cli import DEFAULT_TIMEOUT, PulumiProject  # noqa: E402

from benchmarks import polling  # noqa: E402
from export_image_provider.waiter import load_policy  # noqa: E402

EXPORT_SECONDS = 20.0
# The default policy, but its call budget scaled like the exports (20 s standing for 20 min):
# its first describe would otherwise come at 60 s, three times an export's duration here.
WAITER = '{"budget_period": 0.5}'
STACK = ROOT / "benchmarks" / "stack"
SECTIONS = ("parallelism", "limit", "polling", "refresh", "overhead")
QUICK_SECTIONS = ("polling", "limit")
README = ROOT / "benchmarks" / "README.md"
BEGIN = "<!-- benchmark table: written by scripts/benchmark, do not edit by hand -->"
END = "<!-- end of benchmark table -->"
COLUMNS = ("section", "measure", "figure", "goal", "baseline", "detail", "measured")


class Bench:
    """One emulator for the run, with AMIs to spare (AWS allows one active export per AMI)."""

    def __init__(self, tmp: Path, quick: bool = False) -> None:
        self.tmp = tmp
        self.quick = quick
        self.emulator = EmulatorProcess("--export-seconds", str(EXPORT_SECONDS), "--max-active", "50")
        from export_image_provider.emulator.seed import seed

        self.world = seed(self.emulator.url)
        ec2 = self.emulator.client("ec2")
        self.images = [
            ec2.register_image(Name=f"bench-{i}", Architecture="x86_64", RootDeviceName="/dev/xvda",
                               VirtualizationType="hvm")["ImageId"]
            for i in range(50)
        ]
        self.stacks = 0

    def stack(self, count: int, kind: str = "export", **env: str) -> PulumiProject:
        self.stacks += 1
        project = PulumiProject(self.tmp / f"s{self.stacks}", self.emulator.url, source=STACK,
                                stack=f"b{self.stacks}", extra_env={"EXPORT_IMAGE_PROVIDER_WAITER": WAITER, **env})
        project.stack_init(kind=kind, bucket=self.world["bucket"], images=json.dumps(self.images[:count]))
        return project

    def timed_up(self, project: PulumiProject) -> float:
        """``pulumi up`` with room for every resource at once: Pulumi's default is 4 x CPUs (8 here)."""
        start = time.monotonic()
        project.up("--parallel", "64")
        return time.monotonic() - start

    def describes(self) -> int:
        return self.emulator.control("GET", "calls")["calls"].get("ec2:DescribeExportImageTasks", 0)

    def close(self) -> None:
        self.emulator.stop()


def parallelism(bench: Bench) -> list[dict[str, Any]]:
    bench.emulator.set_config(export_seconds=EXPORT_SECONDS, max_active=20)
    times = {}
    for label, count, env in (("one", 1, {}), ("twenty", 20, {}), ("stock", 20, {"EXPORT_IMAGE_PROVIDER_WORKERS": "4"})):
        project = bench.stack(count, **env)
        times[label] = bench.timed_up(project)
        project.destroy("--parallel", "64")
    return [{
        "measure": "parallelism: up of 20 exports / up of 1",
        "figure": f"{times['twenty'] / times['one']:.2f}",
        "goal": "<= 1.30",
        "baseline": f"{times['stock'] / times['one']:.2f} (stock 4 workers)",
        "detail": f"1: {times['one']:.1f}s, 20: {times['twenty']:.1f}s, 20 stock: {times['stock']:.1f}s",
    }]


def limit(bench: Bench) -> list[dict[str, Any]]:
    count, slots, seconds = (6, 2, 5.0) if bench.quick else (20, 5, EXPORT_SECONDS)
    waves = math.ceil(count / slots)
    bench.emulator.set_config(export_seconds=seconds, max_active=slots)
    elapsed = {}
    # One after another takes count x (export + CLI's per-resource work): past the tests' default timeout.
    timeout = DEFAULT_TIMEOUT + count * (seconds + 30)
    for label, args in (("queued", ("--parallel", "64")), ("one after another", ("--parallel", "1"))):
        project = bench.stack(count)
        start = time.monotonic()
        project.up(*args, timeout=timeout)
        elapsed[label] = time.monotonic() - start
        project.destroy("--parallel", "64")
    ideal = waves * seconds
    return [{
        "measure": f"limit: up of {count} exports, {slots} slots / ({waves} x export duration)",
        "figure": f"{elapsed['queued'] / ideal:.2f}",
        "goal": "full run: <= 1.20" if bench.quick else "<= 1.20",  # quick: CLI start-up outweighs 5 s exports
        "baseline": f"{elapsed['one after another'] / ideal:.2f} (one after another, run: up --parallel 1)",
        "detail": f"{elapsed['queued']:.1f}s vs {elapsed['one after another']:.1f}s for {count} exports of {seconds:g}s",
    }]


def polling_rows(bench: Bench) -> list[dict[str, Any]]:
    if bench.quick:
        rows = polling.measure((900.0, 3600.0), live=None, repeats=1)
    else:
        rows = polling.measure()
    period = load_policy({}).budget_period
    out = []
    for (duration, clock) in sorted({(r["duration_s"], r["clock"]) for r in rows}, key=lambda k: (k[1] != "wall", k[0])):
        loop = next(r for r in rows if (r["duration_s"], r["clock"], r["waiter"]) == (duration, clock, "shell loop"))
        label = f"{duration / 3600:g} h" if duration >= 3600 else f"{duration / 60:g} min"
        lag_bound = max(10.0, 0.05 * duration)
        # Under 10 minutes the lag bound is below the call budget's period: the budget wins (waiter.py).
        goal = (f"<= 120/h, <= {lag_bound:g}s" if lag_bound >= period else
                f"<= 120/h, <= {period:g}s (budget wins: lag bound {lag_bound:g}s)")
        for ours in (r for r in rows if (r["duration_s"], r["clock"], r["waiter"]) == (duration, clock, "provider")):
            out.append({
                "measure": f"polling {label}, {ours['shape']} shape ({clock} clock): describes/hour, worst lag",
                "figure": f"{ours['calls_per_hour']:.0f}/h, {ours['worst_lag_s']:.1f}s",
                "goal": goal,
                "baseline": f"{loop['calls_per_hour']:.0f}/h, {loop['worst_lag_s']:.1f}s (sleep 30 loop)",
                "detail": f"{ours['describe_calls']} calls vs {loop['describe_calls']}",
            })
    return out


def refresh(bench: Bench) -> list[dict[str, Any]]:
    bench.emulator.set_config(export_seconds=1, max_active=50)
    counts = {}
    cases = (("default", {}, ()), ("parallel", {}, ("--parallel", "64")),
             ("unbatched", {"EXPORT_IMAGE_PROVIDER_BATCH_WINDOW": "0"}, ()))
    for label, env, args in cases:
        project = bench.stack(50, **env)
        project.up("--parallel", "64")
        bench.emulator.control("POST", "calls", {})
        project.refresh(*args)
        counts[label] = bench.describes()
        project.destroy("--parallel", "64")
    return [{
        "measure": "refresh: pulumi refresh of 50 exports, DescribeExportImageTasks calls",
        "figure": f"{counts['default']} (--parallel 64: {counts['parallel']})",
        "goal": "<= 10",
        "baseline": f"{counts['unbatched']} (batching off)",
        "detail": "Pulumi's default --parallel is 4 x CPUs (8 here): reads arrive 8 at a time",
    }]


def overhead(bench: Bench) -> list[dict[str, Any]]:
    bench.emulator.set_config(export_seconds=1, max_active=50)
    medians = {}
    for kind in ("export", "noop"):
        project = bench.stack(50, kind=kind)
        project.up("--parallel", "64")
        runs = []
        for _ in range(3):
            start = time.monotonic()
            project.preview("--expect-no-changes")
            runs.append(time.monotonic() - start)
        medians[kind] = statistics.median(runs)
        project.destroy("--parallel", "64")
    return [{
        "measure": "overhead: preview, no changes, 50 exports / 50 no-op dynamic resources",
        "figure": f"{medians['export'] / medians['noop']:.2f}",
        "goal": "<= 1.25",
        "baseline": f"1.00 ({medians['noop']:.1f}s no-op)",
        "detail": f"{medians['export']:.1f}s exports",
    }]


MEASURES = {"parallelism": parallelism, "limit": limit, "polling": polling_rows, "refresh": refresh,
            "overhead": overhead}


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in COLUMNS) + " |" for r in rows]
    return "\n".join(lines)


def parse_table(text: str) -> list[dict[str, str]]:
    """The rows of a table written by :func:`table` (cells never hold ``|``)."""
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    if not lines:
        return []
    header = [c.strip() for c in lines[0].strip("|").split(" | ")]
    return [dict(zip(header, (c.strip() for c in line.strip()[2:-2].split(" | ")))) for line in lines[1:]]


def write_readme(rows: list[dict[str, Any]], sections: list[str], note: str, path: Path = README) -> None:
    """Replace the README's rows of ``sections`` with ``rows``, keep the others, in SECTIONS order."""
    text = path.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{path}: the markers {BEGIN!r} and {END!r} are missing")
    before, rest = text.split(BEGIN, 1)
    old, after = rest.split(END, 1)
    kept = [r for r in parse_table(old) if r.get("section") in SECTIONS and r["section"] not in sections]
    merged = sorted(kept + rows, key=lambda r: SECTIONS.index(r["section"]))
    path.write_text(f"{before}{BEGIN}\n{note}\n\n{table(merged)}\n{END}{after}")


def machine() -> str:
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    pulumi = shutil.which("pulumi")
    version = subprocess.run([pulumi, "version"], capture_output=True, text=True).stdout.strip() if pulumi else "none"
    return f"{os.cpu_count()} cores / {memory:.0f} GiB, Pulumi CLI {version}"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scripts/benchmark", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sections", nargs="*", metavar="section", help=f"any of {', '.join(SECTIONS)} (default: all)")
    parser.add_argument("--quick", action="store_true",
                        help=f"a quick subset: {', '.join(QUICK_SECTIONS)} with fewer and shorter cases")
    parser.add_argument("--no-write", action="store_true", help="print the table only; leave benchmarks/README.md")
    args = parser.parse_args(argv)
    chosen = args.sections or list(QUICK_SECTIONS if args.quick else SECTIONS)
    unknown = set(chosen) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown measurement(s): {', '.join(sorted(unknown))}; choose from {', '.join(SECTIONS)}")
    chosen = [name for name in SECTIONS if name in chosen]
    rows: list[dict[str, Any]] = []
    started_run = time.monotonic()
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d") + (" quick" if args.quick else "")
    with tempfile.TemporaryDirectory(prefix="export-bench-") as tmp:
        bench = Bench(Path(tmp), quick=args.quick)
        try:
            for name in chosen:
                started = time.monotonic()
                rows += [{"section": name, **row, "measured": stamp} for row in MEASURES[name](bench)]
                print(f"{name}: {time.monotonic() - started:.0f}s", file=sys.stderr, flush=True)
        finally:
            bench.close()
    print(table(rows))
    if not args.no_write:
        command = " ".join(["scripts/benchmark", *argv])
        note = (f"Last written {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC by `{command}` "
                f"({time.monotonic() - started_run:.0f}s) on {machine()}; each row says when it was measured.")
        write_readme(rows, chosen, note)
        print(f"wrote {README.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
