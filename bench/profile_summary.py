"""Summarise a py-spy `--format raw` profile: where the samples are, by function, self and inclusive.

    python bench/profile_summary.py bench/out/profile-1m.txt [--top 25] [--match pipeline/]
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter

_LINE = re.compile(r":\d+\)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("profile")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--match", default="", help="only inclusive rows whose frame contains this text")
    args = parser.parse_args(argv)
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    processes: Counter[str] = Counter()
    total = 0
    with open(args.profile, encoding="utf-8") as handle:
        for line in handle:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not stack:
                continue
            samples = int(count)
            total += samples
            frames = [_LINE.sub(")", frame) for frame in stack.split(";")]
            processes[frames[0][:100]] += samples
            own[frames[-1]] += samples
            for frame in set(frames):
                inclusive[frame] += samples
    if not total:
        print("no samples")
        return 1
    print(f"{total} samples")
    print("\nby process:")
    for name, samples in processes.most_common(5):
        print(f"  {samples / total:6.1%}  {name}")
    print(f"\nself time, top {args.top}:")
    for name, samples in own.most_common(args.top):
        print(f"  {samples / total:6.1%}  {name[:140]}")
    print(f"\ninclusive time, top {args.top}{f' matching {args.match!r}' if args.match else ''}:")
    shown = 0
    for name, samples in inclusive.most_common():
        if args.match in name and not name.startswith("process ") and not name.startswith("thread "):
            print(f"  {samples / total:6.1%}  {name[:140]}")
            shown += 1
            if shown >= args.top:
                break
    return 0


if __name__ == "__main__":
    sys.exit(main())
