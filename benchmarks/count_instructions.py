"""The bridge's own CPU per record as instructions (valgrind's callgrind), which a shared machine's load does not move.

Run: `.venv/bin/python benchmarks/count_instructions.py [--against REF] [--records 2000]`; needs valgrind
(`apt-get install valgrind`). Prints instructions per record for the decode floor and for `bridge.handle` on
the suite's event with AWS stubbed and one send thread (benchmarks/profile_bridge.py `--steps` times the
same), and with `--against` for the bridge as it is at a git ref (`main`, a commit) too, each with its
ratio to the floor.

Timings on a machine three people share move by 10-30% from one run to the next; an instruction count
moves by well under 1% (hash seed fixed, one thread), so two versions of planning a few percent apart can
be told apart in one run. Instructions are not time: a cache miss or a branch mispredicted costs several,
and the C loops of base64 and of the character checks run more instructions per nanosecond than the
interpreter does. Here the ratio to the floor in instructions has run below the timed one: 1.35x in
instructions against about 1.45-1.5x timed in session 7 (valgrind's cycle estimate gives 1.51x: the bridge
misses the caches more per instruction than the floor). The timed ratio (`benchmarks/suite.py --only
own_cpu`) stays the figure the issue's goal is read on.
`--steps` counts each step of planning alone the same way (benchmarks/profile_bridge.py `step_cases`).
`--cache` adds callgrind's simulated cache misses per record (L1 instruction, L1 data read and write; the
simulated caches take this machine's sizes): where a timed ratio moves away from the instruction ratio.
Each figure is (instructions of the setup and `--repeat` runs) minus (instructions of the setup alone), per
record, from two processes.
"""

from __future__ import annotations

import argparse
import gc
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def child(variant: str, runs: int, records: int) -> None:
    """Set up, run `variant` once to warm it, then `runs` more times: what the parent counts."""
    sys.path.insert(0, str(HERE))
    from suite import NoKeys, NoStore, NullSender, _bridge, decode_floor, kafka_event  # noqa: PLC0415

    event = kafka_event(records)
    if variant.startswith("step:"):
        from profile_bridge import step_cases  # noqa: PLC0415

        bridge = _bridge("sqs", None, sqs=NullSender(), sns=NullSender(), parking_store=NoStore(),
                         signing_keys=NoKeys())
        bridge.handle(kafka_event(20))
        work = step_cases(bridge, event)[int(variant.removeprefix("step:"))][1]
    elif variant == "floor":
        def work() -> None:
            decode_floor(event)
    else:
        bridge = _bridge("sqs", None, sqs=NullSender(), sns=NullSender(), parking_store=NoStore(),
                         signing_keys=NoKeys())
        bridge._deliverer._max_concurrency = 1
        bridge.handle(kafka_event(20))

        def work() -> None:
            bridge.handle(event)
    work()
    gc.collect()
    gc.disable()  # the bridge pauses it while it plans anyway; the floor's lists would set it off
    for _ in range(runs):
        work()


def tool(name: str, install: str) -> str:
    """The full path of an executable, or exit saying how to install it."""
    path = shutil.which(name)
    if path is None:
        raise SystemExit(f"{name} is not installed: {install}, then run this again")
    return path


# callgrind's counters with --cache-sim=yes, in the order of its "Collected" line
CACHE_EVENTS = ("Ir", "Dr", "Dw", "I1mr", "D1mr", "D1mw", "ILmr", "DLmr", "DLmw")


def counters(variant: str, runs: int, records: int, lambdas: Path, *, cache: bool = False) -> list[int]:
    """What callgrind counts for the child process (`runs` runs after the setup): instructions, and with
    `cache` every counter of CACHE_EVENTS (its simulated L1 and last-level caches, sized as this machine's)."""
    # No bytecode written: a module edited since its .pyc was written is compiled by both processes of a
    # figure, not by whichever runs first (which once added 13k instructions per record to one).
    env = dict(os.environ, PYTHONHASHSEED="0", PYTHONPATH=str(lambdas), PYTHONDONTWRITEBYTECODE="1")
    done = subprocess.run(
        [tool("valgrind", "apt-get install valgrind (Debian)"), "--tool=callgrind", "--callgrind-out-file=/dev/null",
         *(["--cache-sim=yes"] if cache else []),
         sys.executable, __file__, "--child", variant, str(runs), "--records", str(records)],
        capture_output=True, text=True, env=env, check=False)
    found = re.search(r"Collected : ([\d ]+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"callgrind failed for {variant} ({lambdas}):\n{done.stderr[-2000:]}")
    return [int(n) for n in found.group(1).split()]


def per_record(variant: str, runs: int, records: int, lambdas: Path) -> float:
    return (counters(variant, runs, records, lambdas)[0] - counters(variant, 0, records, lambdas)[0]) / runs / records


def misses_per_record(variant: str, runs: int, records: int, lambdas: Path) -> dict[str, float]:
    """Instructions and simulated cache misses per record (CACHE_EVENTS), the setup's taken off."""
    full = counters(variant, runs, records, lambdas, cache=True)
    setup = counters(variant, 0, records, lambdas, cache=True)
    return {name: (a - b) / runs / records for name, a, b in zip(CACHE_EVENTS, full, setup, strict=True)}


def checkout(ref: str, into: Path) -> Path:
    """lambdas/ as it is at `ref`, extracted under `into`."""
    archive = subprocess.run([tool("git", "apt-get install git"), "-C", str(ROOT), "archive", ref, "lambdas"],
                             capture_output=True, check=False)
    if archive.returncode != 0:
        raise SystemExit(f"git archive {ref} failed: {archive.stderr.decode(errors='replace').strip()}")
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(into, filter="data")
    return into / "lambdas"


def _probe() -> object:
    """A stubbed bridge, to list the steps by name."""
    from suite import NoKeys, NoStore, NullSender, _bridge  # noqa: PLC0415

    return _bridge("sqs", None, sqs=NullSender(), sns=NullSender(), parking_store=NoStore(), signing_keys=NoKeys())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", metavar="REF", help="also count the bridge at this git ref (main, a commit)")
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=2, help="runs counted after the setup")
    parser.add_argument("--steps", action="store_true",
                        help="count each step of planning alone instead (benchmarks/profile_bridge.py --steps)")
    parser.add_argument("--cache", action="store_true",
                        help="also simulate the caches (callgrind --cache-sim=yes): L1 instruction, L1 data read and "
                             "write misses per record")
    parser.add_argument("--child", nargs=2, metavar=("VARIANT", "RUNS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), args.records)
        return
    tool("valgrind", "apt-get install valgrind (Debian)")
    if args.steps:
        sys.path.insert(0, str(ROOT / "lambdas"))
        sys.path.insert(0, str(HERE))
        from profile_bridge import step_cases  # noqa: PLC0415
        from suite import kafka_event  # noqa: PLC0415

        names = [name for name, _ in step_cases(_probe(), kafka_event(20))]
        print(f"| {args.records} records, AWS stubbed: step alone | instructions per record |\n|---|---|")
        for i, name in enumerate(names):
            count = per_record(f"step:{i}", args.repeat, args.records, ROOT / "lambdas")
            print(f"| {name} | {count:,.0f} |", flush=True)
        return
    with tempfile.TemporaryDirectory() as tmp:
        rows = [("decode floor (the reference)", "floor", ROOT / "lambdas"),
                ("bridge.handle, 1 send thread (this tree)", "handle", ROOT / "lambdas")]
        if args.against:
            rows.append((f"bridge.handle, 1 send thread ({args.against})", "handle", checkout(args.against, Path(tmp))))
        if args.cache:
            print(f"| {args.records} records, AWS stubbed | instructions per record | × decode floor | L1 instruction "
                  "misses | L1 data read misses | L1 data write misses |\n|---|---|---|---|---|---|")
        else:
            print(f"| {args.records} records, AWS stubbed | instructions per record | × decode floor |\n|---|---|---|")
        floor = 0.0
        for label, variant, lambdas in rows:
            if args.cache:
                got = misses_per_record(variant, args.repeat, args.records, lambdas)
                count = got["Ir"]
                floor = floor or count
                print(f"| {label} | {count:,.0f} | {count / floor:.2f} | {got['I1mr']:,.0f} | {got['D1mr']:,.0f} | "
                      f"{got['D1mw']:,.0f} |", flush=True)
                continue
            count = per_record(variant, args.repeat, args.records, lambdas)
            floor = floor or count
            print(f"| {label} | {count:,.0f} | {count / floor:.2f} |", flush=True)


if __name__ == "__main__":
    main()
