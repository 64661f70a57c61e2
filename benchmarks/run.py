"""Run every measurement of issue 4 against the emulator with the real Pulumi CLI; print a table.

    scripts/benchmark            # all of them (about 15 minutes on 2 cores)
    scripts/benchmark polling    # some: parallelism limit polling refresh overhead

Each figure is a ratio or a count compared with a baseline measured in the same
run, so the numbers hold on a noisy machine:

- parallelism: ``pulumi up`` of 20 exports / of 1 export (both 20 s exports, 20 slots);
  baseline: the same 20 with Pulumi's stock 4-worker provider pool.
- limit: 20 exports through 5 slots / ceil(20/5) export durations; baseline: one
  after another, as a shell loop runs them (20 durations).
- polling: Describe calls per hour of export and the lag to notice completion,
  for a 60 s export (wall clock) and 1 h and 4 h exports (simulated clock);
  baseline: a loop that sleeps 30 s between describes.
- refresh: DescribeExportImageTasks calls for ``pulumi refresh`` of 50 exports;
  baseline: the same refresh with batching off.
- overhead: ``pulumi preview`` with no changes of 50 exports / of 50 no-op
  dynamic resources.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from conftest import EmulatorProcess  # noqa: E402
from pulumi_cli import PulumiProject  # noqa: E402

from benchmarks import polling  # noqa: E402

EXPORT_SECONDS = 20.0
STACK = ROOT / "benchmarks" / "stack"
SECTIONS = ("parallelism", "limit", "polling", "refresh", "overhead")


class Bench:
    """One emulator for the run, with AMIs to spare (AWS allows one active export per AMI)."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
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
                                stack=f"b{self.stacks}", extra_env={"EXPORT_IMAGE_PROVIDER_WAITER": "{}", **env})
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
    bench.emulator.set_config(export_seconds=EXPORT_SECONDS, max_active=5)
    project = bench.stack(20)
    elapsed = bench.timed_up(project)
    project.destroy("--parallel", "64")
    waves = math.ceil(20 / 5)
    return [{
        "measure": "limit: up of 20 exports, 5 slots / (4 x export duration)",
        "figure": f"{elapsed / (waves * EXPORT_SECONDS):.2f}",
        "goal": "<= 1.20",
        "baseline": f"{20 / waves:.2f} (one after another)",
        "detail": f"{elapsed:.1f}s for 20 exports of {EXPORT_SECONDS:g}s, 0 failures",
    }]


def polling_rows(_bench: Bench) -> list[dict[str, Any]]:
    rows = polling.measure()
    out = []
    for duration in sorted({r["duration_s"] for r in rows}):
        ours = next(r for r in rows if r["duration_s"] == duration and r["waiter"] == "provider")
        loop = next(r for r in rows if r["duration_s"] == duration and r["waiter"] == "shell loop")
        label = f"{duration / 3600:g} h" if duration >= 3600 else f"{duration / 60:g} min"
        out.append({
            "measure": f"polling {label} ({ours['clock']} clock): describes/hour, worst lag",
            "figure": f"{ours['calls_per_hour']:.0f}/h, {ours['worst_lag_s']:.1f}s",
            "goal": "<= 60/h, <= 10s",
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
        "measure": "refresh of 50 exports: DescribeExportImageTasks calls",
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
        "measure": "preview, no changes, 50 exports / 50 no-op dynamic resources",
        "figure": f"{medians['export'] / medians['noop']:.2f}",
        "goal": "<= 1.25",
        "baseline": f"1.00 ({medians['noop']:.1f}s no-op)",
        "detail": f"{medians['export']:.1f}s exports",
    }]


MEASURES = {"parallelism": parallelism, "limit": limit, "polling": polling_rows, "refresh": refresh,
            "overhead": overhead}


def table(rows: list[dict[str, Any]]) -> str:
    columns = ("measure", "figure", "goal", "baseline", "detail")
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(r[c]) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    chosen = argv or list(SECTIONS)
    unknown = set(chosen) - set(SECTIONS)
    if unknown:
        print(f"unknown measurement(s): {', '.join(sorted(unknown))}; choose from {', '.join(SECTIONS)}")
        return 2
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="export-bench-") as tmp:
        bench = Bench(Path(tmp))
        try:
            for name in chosen:
                started = time.monotonic()
                rows += MEASURES[name](bench)
                print(f"{name}: {time.monotonic() - started:.0f}s", file=sys.stderr, flush=True)
        finally:
            bench.close()
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
