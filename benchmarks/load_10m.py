"""Load and preprocess a large generic CSV event log: wall time and peak memory.

Generates (seeded) a CSV ``user_id,item_id,timestamp,event_type`` with ~200k users, ~50k
items, Zipf item popularity and skewed user activity, then times

1. ``recpilot.data.readers.read_dataset(path, "csv")`` and
2. ``recpilot.data.preprocess.build_interactions(log, PreprocessConfig(k_core=5))``.

The file is written by a child process, so the peak resident memory printed is that of
reading and preprocessing alone. Usage::

    python benchmarks/load_10m.py                 # 10M rows in a temporary folder
    python benchmarks/load_10m.py --rows 1000000 --keep /tmp/events.csv
"""

from __future__ import annotations

import argparse
import logging
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

try:
    from _common import machine, versions
except ImportError:  # run from elsewhere: facts are optional
    import platform

    def machine() -> str:
        return platform.platform()

    def versions() -> str:
        return f"Python {platform.python_version()}, polars {pl.__version__}"


EVENT_TYPES = ("view", "click", "cart", "purchase")
EVENT_SHARES = (0.85, 0.10, 0.03, 0.02)


def generate(path: Path, rows: int, users: int, items: int, seed: int) -> None:
    """Write ``rows`` events to ``path`` (CSV with a header)."""
    rng = np.random.default_rng(seed)
    # Zipf-like item popularity (exponent 1, offset 10), ids shuffled so popular != small id
    item_weight = 1.0 / (np.arange(items) + 10.0)
    item_ids = rng.permutation(items).astype(np.int64) + 1
    # heavy-tailed user activity (log-normal), also shuffled
    user_weight = rng.lognormal(mean=0.0, sigma=1.0, size=users)
    user_ids = rng.permutation(users).astype(np.int64) + 1
    start = 1_672_531_200  # 2023-01-01, seconds
    year = 365 * 24 * 3600
    chunk = 2_000_000
    with path.open("wb") as fh:
        for first in range(0, rows, chunk):
            n = min(chunk, rows - first)
            frame = pl.DataFrame(
                {
                    "user_id": user_ids[rng.choice(users, n, p=user_weight / user_weight.sum())],
                    "item_id": item_ids[rng.choice(items, n, p=item_weight / item_weight.sum())],
                    "timestamp": start + rng.integers(0, year, n),
                    "event_type": pl.Series(EVENT_TYPES)
                    .gather(rng.choice(len(EVENT_TYPES), n, p=EVENT_SHARES))
                    .to_numpy(),
                }
            )
            frame.write_csv(fh, include_header=first == 0)


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (MiB; Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--k-core", type=int, default=5)
    parser.add_argument("--keep", type=Path, default=None, help="write (or reuse) the CSV here")
    parser.add_argument("--generate-only", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.generate_only is not None:
        generate(args.generate_only, args.rows, args.users, args.items, args.seed)
        return

    logging.basicConfig(level=logging.WARNING)
    from recpilot.config import PreprocessConfig
    from recpilot.data.preprocess import build_interactions
    from recpilot.data.readers import read_dataset

    print(f"machine:  {machine()}")
    print(f"versions: {versions()}")
    print(
        f"data:     {args.rows:,} rows, {args.users:,} users, {args.items:,} items, "
        f"seed {args.seed}, k_core {args.k_core}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = args.keep or Path(tmp) / "events.csv"
        if not path.exists():
            t0 = time.perf_counter()
            subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--rows",
                    str(args.rows),
                    "--users",
                    str(args.users),
                    "--items",
                    str(args.items),
                    "--seed",
                    str(args.seed),
                    "--generate-only",
                    str(path),
                ],
                check=True,
            )
            print(f"generate: {time.perf_counter() - t0:6.1f} s (child process, not counted)")
        print(f"file:     {path} ({path.stat().st_size / 2**20:,.0f} MiB)")
        base = peak_rss_mib()

        t0 = time.perf_counter()
        log = read_dataset(path, "csv")
        t_read = time.perf_counter() - t0
        rss_read = peak_rss_mib()
        print(
            f"read:     {t_read:6.2f} s  {log.events.height:,} events, "
            f"{log.events['user_id'].n_unique():,} users, {log.events['item_id'].n_unique():,} "
            f"items; peak RSS {rss_read:,.0f} MiB"
        )

        t0 = time.perf_counter()
        data, report = build_interactions(log, PreprocessConfig(k_core=args.k_core))
        t_prep = time.perf_counter() - t0
        rss_prep = peak_rss_mib()
        print(f"prepare:  {t_prep:6.2f} s  {data}; peak RSS {rss_prep:,.0f} MiB")
        for line in report.lines():
            print(f"          {line}")
        total = statistics.fsum([t_read, t_prep])
        print(
            f"total:    {total:6.2f} s wall; peak RSS {rss_prep:,.0f} MiB "
            f"(interpreter and imports: {base:,.0f} MiB)"
        )


if __name__ == "__main__":
    main()
