"""Long fuzzing run of the sans-I/O protocol cores: the properties of tests/test_fuzz.py
(AGI, AMI framing, AudioSocket framing, WAV), with far more examples than CI runs.

Each round runs every property once, with a fresh random seed and `--examples` examples;
rounds go on until `--minutes` have passed (one round at least, so `--minutes 0` runs
exactly one). Figures per property: rounds, examples run (explicit `@example`s and the
shrinking of a failure included) and failures. A failure is printed as it is found, with
its seed and the falsifying example Hypothesis shrank it to: add that as an `@example`.
The exit status is 1 if anything failed.

    python -m bench.fuzz [--examples 2000] [--minutes 3]
"""

from __future__ import annotations

import argparse
import functools
import random
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, seed, settings

sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))

from test_fuzz import PROPERTIES, Property  # noqa: E402


@dataclass
class Tally:
    rounds: int = 0
    examples: int = 0
    failures: int = 0


def run_round(name: str, prop: Property, examples: int, tally: Tally) -> None:
    """One run of `prop` with a random seed; its examples and failures go to `tally`."""

    @functools.wraps(prop.body)  # keeps the signature and the explicit examples
    def counted(*args: Any, **kwargs: Any) -> None:
        tally.examples += 1
        prop.body(*args, **kwargs)

    seed_value = random.SystemRandom().getrandbits(64)
    test = seed(seed_value)(
        settings(
            max_examples=examples,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),  # a slow or filtered run is no bug of the cores
        )(given(*prop.strategies)(counted))
    )
    tally.rounds += 1
    try:
        test()
    except Exception as exc:  # noqa: BLE001 - every failure is counted and shown, the run goes on
        tally.failures += len(exc.exceptions) if isinstance(exc, ExceptionGroup) else 1
        print(f"FAILED {name} (seed {seed_value}):", file=sys.stderr)
        traceback.print_exception(exc)


def report(tallies: dict[str, Tally], minutes: float) -> None:
    width = max(len(name) for name in tallies)
    print(f"{'property':<{width}} {'rounds':>7} {'examples':>9} {'failures':>9}")
    for name, tally in tallies.items():
        print(f"{name:<{width}} {tally.rounds:>7} {tally.examples:>9} {tally.failures:>9}")
    total = sum(tally.examples for tally in tallies.values())
    failures = sum(tally.failures for tally in tallies.values())
    print(f"{'total':<{width}} {'':>7} {total:>9} {failures:>9}   in {minutes:.1f} min")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=2000, help="examples per property and round")
    parser.add_argument("--minutes", type=float, default=3.0, help="keep starting rounds until then")
    args = parser.parse_args()
    tallies = {name: Tally() for name in PROPERTIES}
    started = time.monotonic()
    deadline = started + 60 * args.minutes
    while True:
        for name, prop in PROPERTIES.items():
            run_round(name, prop, args.examples, tallies[name])
        if time.monotonic() >= deadline:
            break
    report(tallies, (time.monotonic() - started) / 60)
    sys.exit(1 if any(tally.failures for tally in tallies.values()) else 0)


if __name__ == "__main__":
    main()
