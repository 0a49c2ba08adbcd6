"""Profiles flex: a training step's phases with syncs, then functions by perf samples.

1. `allday-bench profile` times the phases of each step (data, forward, backward, gradient
   collection, optimizer), each ending with a device sync; this prints the median per phase.
2. Where `perf` can sample (software clock; hardware counters are not needed), `perf record`
   samples `allday-bench train-step`, then `allday-bench backbone` (EfficientNet-Lite0
   inference, the recommended embedding), and this prints the functions with the most self
   time in each.

Usage: python bench/profile_step.py --flex BIN --data DIR [--size 64] [--out bench/results]
"""

import argparse
import json
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def phases(args) -> str:
    command = [args.flex, "profile", "--data", str(args.data), "--size", str(args.size),
               "--batch", "8", "--warmup", "1", "--iterations", str(args.iterations)]
    report = json.loads(subprocess.run(command, check=True, capture_output=True,
                                       text=True).stdout.splitlines()[-1])
    # In step order; the JSON object comes back with its keys sorted.
    order = ["data", "forward", "backward", "gradients", "optimizer"]
    medians = {name: statistics.median(report["phases"][name]) for name in order}
    total = sum(medians.values())
    lines = [f"Phases of a flex training step, {args.size}×{args.size}, batch 8 "
             f"(median of {args.iterations} steps, sum of medians {total * 1e3:.0f} ms):", "",
             "| phase | median | share |", "| --- | ---: | ---: |"]
    for name, seconds in medians.items():
        lines.append(f"| {name} | {seconds * 1e3:.0f} ms | {100 * seconds / total:.0f} % |")
    return "\n".join(lines)


def functions(args, label: str, arguments: list[str]) -> str:
    if shutil.which("perf") is None:
        return "perf is not installed; no function profile."
    data = args.out / "perf.data"
    record = ["perf", "record", "-e", "cpu-clock", "-F", "499", "-o", str(data), "--",
              args.flex] + arguments
    if subprocess.run(record, capture_output=True).returncode != 0:
        return "perf record failed on this machine; no function profile."
    report = subprocess.run(["perf", "report", "-i", str(data), "--stdio", "--no-children",
                             "--sort", "symbol", "--percent-limit", "1"],
                            capture_output=True, text=True).stdout
    rows = [line for line in report.splitlines() if line.strip() and not line.startswith("#")]
    data.unlink(missing_ok=True)
    return (f"Functions by self time in {label} (perf, cpu-clock samples, including start-up "
            "and warm-up, entries of 1 % or more):\n\n```\n" + "\n".join(rows[:25])
            + "\n```")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flex", required=True, help="allday-bench built with flex")
    parser.add_argument("--data", type=Path, required=True, help="Gardens Point folder")
    parser.add_argument("--size", type=int, default=64, help="image width and height, pixels")
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--weights", type=Path,
                        default=HERE.parent.parent / "shared/models/efficientnet_lite0"
                        / "efficientnet-lite0-57934424.pth",
                        help="EfficientNet-Lite0 weights for the backbone profile")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    train = ["train-step", "--data", str(args.data), "--size", str(args.size), "--batch", "8",
             "--warmup", "1", "--iterations", str(args.iterations)]
    backbone = ["backbone", "--weights", str(args.weights), "--warmup", "1", "--iterations",
                str(2 * args.iterations)]
    text = "\n\n".join([phases(args), functions(args, "`train-step`", train),
                         functions(args, "`backbone`", backbone)]) + "\n"
    (args.out / "profile.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
