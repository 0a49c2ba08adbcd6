"""Runs allday's benchmark binary and the PyTorch/FAISS reference interleaved and prints the table.

Every case runs each implementation once per round, in the same order every round (A B A B
...), so that load from other processes on the machine falls on all of them alike. Each run
is a fresh process that does its own warm-up; its peak RSS comes from the kernel's rusage for
that process (ru_maxrss). The table reports the median over all timed iterations of all
rounds, the ratio of medians ours/reference, and the highest peak RSS over the rounds.

Usage: python bench/harness.py --flex BIN [--tch BIN] --data DIR [--rounds N]
       [--allday-flex CLI --allday-tch CLI --eval-run RUN]
(bench/run.sh builds the binaries and passes them.)
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REFERENCE = [sys.executable, str(HERE / "reference.py")]


@dataclass
class Implementation:
    name: str
    program: list[str]  # program and leading arguments, before the subcommand
    extra: list[str] = field(default_factory=list)  # arguments only this one takes
    env: dict[str, str] = field(default_factory=dict)
    reference: bool = False  # a denominator of the ratios


@dataclass
class Case:
    name: str
    subcommand: str
    arguments: list[str]
    implementations: list[Implementation]
    # Time-ratio targets by implementation name, ours/reference.
    targets: dict[str, float] = field(default_factory=dict)
    # Time the whole process (start-up included) instead of the iterations it reports.
    wall: bool = False
    # Stop when the implementations report different parameter counts (a different model).
    same_parameters: bool = True


def run_once(implementation: Implementation, case: Case) -> dict:
    """Runs one process and returns its JSON report with `peak_rss_mib` added."""
    command = implementation.program + [case.subcommand] + implementation.extra + case.arguments
    env = dict(os.environ, **implementation.env)
    with tempfile.TemporaryFile("w+") as stdout, tempfile.TemporaryFile("w+") as stderr:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=stdout, stderr=stderr, env=env, text=True)
        # Reaped here rather than by Popen, so that the rusage is this child's own.
        _, status, rusage = os.wait4(process.pid, 0)
        wall_seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        stdout.seek(0)
        stderr.seek(0)
        output, errors = stdout.read(), stderr.read()
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed with exit code {process.returncode}:\n"
                           f"{errors[-2000:]}")
    lines = [line for line in output.splitlines() if line.startswith("{")]
    if case.wall:
        report = json.loads(lines[-1]) if lines else {}
        report["seconds"] = [wall_seconds]
    elif lines:
        report = json.loads(lines[-1])
    else:
        raise RuntimeError(f"{' '.join(command)} printed no JSON report:\n{output[-2000:]}")
    report["peak_rss_mib"] = rusage.ru_maxrss / 1024.0  # ru_maxrss is in KiB on Linux
    return report


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def run_cases(cases: list[Case], rounds: int, log) -> dict:
    results = {case.name: {impl.name: [] for impl in case.implementations} for case in cases}
    for round_number in range(1, rounds + 1):
        for case in cases:
            for implementation in case.implementations:
                report = run_once(implementation, case)
                results[case.name][implementation.name].append(report)
                log(f"round {round_number}/{rounds} {case.name:28} {implementation.name:14} "
                    f"median {median(report['seconds']) * 1e3:9.1f} ms "
                    f"peak RSS {report['peak_rss_mib']:7.0f} MiB")
    return results


def summarise(cases: list[Case], results: dict) -> list[dict]:
    rows = []
    for case in cases:
        reports = results[case.name]
        summary = {}
        for implementation in case.implementations:
            runs = reports[implementation.name]
            summary[implementation.name] = {
                "median_s": median([s for run in runs for s in run["seconds"]]),
                "peak_rss_mib": max(run["peak_rss_mib"] for run in runs),
                "parameters": runs[0].get("parameters", 0),
                "reference": implementation.reference,
            }
        references = [name for name, row in summary.items() if row["reference"]]
        # Several references (FAISS at 1 and 2 threads) compare against the fastest of them.
        best = min(references, key=lambda name: summary[name]["median_s"])
        for name, row in summary.items():
            if not row["reference"]:
                row["time_ratio"] = row["median_s"] / summary[best]["median_s"]
                row["rss_ratio"] = row["peak_rss_mib"] / summary[best]["peak_rss_mib"]
        parameters = {row["parameters"] for row in summary.values() if row["parameters"]}
        if case.same_parameters and len(parameters) > 1:
            raise RuntimeError(f"{case.name}: parameter counts differ: {summary}")
        rows.append({"case": case.name, "reference": best, "implementations": summary,
                     "targets": case.targets})
    return rows


def format_table(rows: list[dict]) -> str:
    lines = [
        "| case | implementation | median | ratio ours/ref. | target | peak RSS | RSS ratio |",
        "| --- | --- | ---: | ---: | --- | ---: | ---: |",
    ]
    for row in rows:
        for name, figures in row["implementations"].items():
            median_ms = figures["median_s"] * 1e3
            if figures["reference"]:
                ratio, target, rss_ratio = "reference" if name == row["reference"] else "", "", ""
            else:
                ratio = f"{figures['time_ratio']:.2f}"
                rss_ratio = f"{figures['rss_ratio']:.2f}"
                target = ""
                goal = row["targets"].get(name)
                if goal is not None:
                    reached = "reached" if figures["time_ratio"] <= goal else "not reached"
                    target = f"≤ {goal} {reached}"
            lines.append(f"| {row['case']} | {name} | {median_ms:.1f} ms | {ratio} | {target} "
                         f"| {figures['peak_rss_mib']:.0f} MiB | {rss_ratio} |")
    return "\n".join(lines)


def machine() -> str:
    model = ""
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except FileNotFoundError:
        pass
    return f"{model}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}"


def build_cases(args) -> list[Case]:
    rayon = {"RAYON_NUM_THREADS": str(args.threads)}
    data = ["--data", str(args.data)]
    models = [Implementation("allday flex", [args.flex], data, rayon)]
    if args.tch:
        models.append(Implementation("allday tch", [args.tch], data, rayon))
    models.append(Implementation("PyTorch", REFERENCE, ["--threads", str(args.threads)],
                                 reference=True))

    def model_case(name, subcommand, size, batch, warmup, iterations, targets):
        arguments = ["--size", str(size), "--batch", str(batch), "--warmup", str(warmup),
                     "--iterations", str(iterations)]
        return Case(name, subcommand, arguments, models,
                    {"allday flex": targets[0], "allday tch": targets[1]})

    cases = []
    if "train" in args.only:
        # Targets: flex ≤ 1.5 and tch ≤ 0.9 of PyTorch's time for training; 1.2 and 0.8 for
        # inference.
        cases += [
            model_case("training step 64×64, batch 8", "train-step", 64, 8, 1, 3, (1.5, 0.9)),
            model_case("training step 128×128, batch 8", "train-step", 128, 8, 1, 2, (1.5, 0.9)),
        ]
    if "encode" in args.only:
        cases += [
            model_case("encoder 128×128, batch 8", "encode", 128, 8, 2, 10, (1.2, 0.8)),
            model_case("encoder 128×128, batch 1", "encode", 128, 1, 3, 30, (1.2, 0.8)),
        ]
    if "backbone" in args.only:
        # Batch-norm folding changes the parameter count (biases instead of four statistics
        # per channel), so the counts are not compared. Instead, reference.py checks its
        # network against the logits of reference.json, and allday's tests check allday's.
        weights = ["--weights", str(args.weights)]
        backbones = [Implementation("allday flex", [args.flex], weights, rayon),
                     Implementation("allday flex, BN unfolded", [args.flex],
                                    weights + ["--unfolded"], rayon)]
        if args.tch:
            backbones.append(Implementation("allday tch", [args.tch], weights, rayon))
        backbones.append(Implementation("PyTorch", REFERENCE,
                                        weights + ["--threads", str(args.threads)],
                                        reference=True))
        arguments = ["--width", "398", "--height", "224", "--batch", "8", "--depth", "3",
                     "--warmup", "1", "--iterations", "5"]
        cases.append(Case("EfficientNet-Lite0, 3 layers, 398×224, batch 8", "backbone",
                          arguments, backbones,
                          {"allday flex": 1.2, "allday flex, BN unfolded": 1.2,
                           "allday tch": 0.8}, same_parameters=False))
    if "eval" in args.only and args.eval_run:
        runs = [Implementation("allday flex", [args.allday_flex], ["--run", str(args.eval_run)],
                               rayon)]
        if args.allday_tch:
            runs.append(Implementation("allday tch", [args.allday_tch],
                                       ["--run", str(args.eval_run)], rayon))
        runs.append(Implementation("PyTorch", REFERENCE, ["--threads", str(args.threads),
                                                          "--data", str(args.data)],
                                   reference=True))
        cases.append(Case("`allday eval`, Gardens Point, 100 + 100 images 64×48", "eval", [],
                          runs, wall=True))
    if "search" in args.only:
        ours = Implementation("allday", [args.flex], env=rayon)
        faiss = [Implementation(f"FAISS Flat{metric.upper()}, {threads} thr.", REFERENCE,
                                ["--metric", metric, "--threads", str(threads)], reference=True)
                 for metric in ("ip", "l2") for threads in sorted({1, args.threads})]
        for rows in (100_000, 1_000_000):
            arguments = ["--rows", str(rows), "--dims", "256", "--queries", "100", "--k", "10",
                         "--warmup", "1", "--iterations", "3"]
            # Target: at least FAISS's throughput, so at most its time.
            cases.append(Case(f"top-10 of {rows:,} × 256, 100 queries", "search", arguments,
                              [ours] + faiss, {"allday": 1.0}))
    return cases


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flex", required=True, help="allday-bench built with the flex backend")
    parser.add_argument("--tch", help="allday-bench built with --features tch")
    parser.add_argument("--data", type=Path, required=True, help="Gardens Point folder")
    parser.add_argument("--allday-flex", help="allday CLI built with flex, for `eval`")
    parser.add_argument("--allday-tch", help="allday CLI built with --features tch")
    parser.add_argument("--eval-run", type=Path, help="run directory that `allday eval` reads")
    parser.add_argument("--weights", type=Path,
                        default=HERE.parent.parent / "shared/models/efficientnet_lite0"
                        / "efficientnet-lite0-57934424.pth",
                        help="EfficientNet-Lite0 weights for the backbone case")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", nargs="+",
                        default=["train", "encode", "backbone", "eval", "search"],
                        choices=["train", "encode", "backbone", "eval", "search"])
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()

    args.out.mkdir(parents=True, exist_ok=True)
    log_path = args.out / "log.txt"
    with log_path.open("w") as log_file:
        def log(message):
            print(message, file=sys.stderr, flush=True)
            print(message, file=log_file, flush=True)

        started = datetime.datetime.now(datetime.timezone.utc)
        log(f"{started:%Y-%m-%d %H:%M} UTC on {machine()}")
        cases = build_cases(args)
        results = run_cases(cases, args.rounds, log)
    rows = summarise(cases, results)
    table = format_table(rows)
    header = (f"Measured {started:%Y-%m-%d %H:%M} UTC on {machine()}; {args.rounds} rounds, "
              f"{args.threads} threads.\n\n")
    (args.out / "table.md").write_text(header + table + "\n")
    (args.out / "results.json").write_text(json.dumps(
        {"started": started.isoformat(), "machine": machine(), "rounds": args.rounds,
         "threads": args.threads, "rows": rows, "runs": results}, indent=1))
    print(header + table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
