"""CPU profile of the bridge's own work on the benchmark's 10,000-record event, AWS stubbed.

Run: `.venv/bin/python benchmarks/profile_bridge.py [--top 20]`; prints the functions that take the
most time of their own (cProfile `tottime`), the list issue 10 asks to compare before and after.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "lambdas"))
sys.path.insert(0, str(HERE))

from suite import NoKeys, NoStore, NullSender, _bridge, kafka_event  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--records", type=int, default=10_000)
    args = parser.parse_args()
    bridge = _bridge("sqs", None, sqs=NullSender(), sns=NullSender(), parking_store=NoStore(), signing_keys=NoKeys())
    bridge.handle(kafka_event(20))
    event = kafka_event(args.records)
    profile = cProfile.Profile()
    profile.enable()
    bridge.handle(event)
    profile.disable()
    out = io.StringIO()
    stats = pstats.Stats(profile, stream=out).strip_dirs().sort_stats("tottime")
    stats.print_stats(args.top)
    text = out.getvalue()
    print(text[text.index("   ncalls"):] if "   ncalls" in text else text)


if __name__ == "__main__":
    main()
