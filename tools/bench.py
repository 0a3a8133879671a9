"""Benchmark: evaluation time of each stack under the mocks, and its resource count.

    python -m tools.bench            # 5 rounds per stack
    python -m tools.bench --rounds 20

The first round includes importing the provider SDKs (reported separately); the median of the
remaining rounds is the steady-state evaluation time. Times are wall clock on this machine.
"""

from __future__ import annotations

import argparse
import statistics
import time

from tools import offline


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.bench", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)

    header = ("stack", "resources", "first run s", "median s", "min s", "max s")
    print("{:<10} {:>9} {:>12} {:>9} {:>7} {:>7}".format(*header))
    for stack in offline.STACK_ORDER:
        timings = []
        resources = 0
        for _ in range(max(args.rounds, 2)):
            start = time.perf_counter()
            run = (
                offline.run_with_dependencies(stack)
                if stack != offline.STACK_ORDER[0]
                else offline.run_stack(stack)
            )
            timings.append(time.perf_counter() - start)
            resources = len(run.registrations)
        steady = timings[1:]
        print(
            f"{stack:<10} {resources:>9} {timings[0]:>12.3f} {statistics.median(steady):>9.3f} "
            f"{min(steady):>7.3f} {max(steady):>7.3f}"
        )
    print("(homelab times include evaluating aws-gpu first, as the plan does)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
