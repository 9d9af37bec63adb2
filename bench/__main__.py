"""Run the benchmarks, each in its own process: `python -m bench` runs all of them in turn.

`python -m bench NAME [NAME ...] [-- ARGS]` runs only those (ARGS go to each of them), e.g.
`python -m bench pipeline_cpu -- --runs 5`; `python -m bench --list` names them.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCHES = (
    "store_window",
    "driver_scale",
    "pipeline_cpu",
    "inbound_overhead",
    "discord_load",
    "telegram_load",
    "slack_load",
)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in args:
        at = args.index("--")
        args, extra = args[:at], args[at + 1 :]
    if args in (["-h"], ["--help"]):
        print(__doc__)
        return 0
    if args == ["--list"]:
        print("\n".join(BENCHES))
        return 0
    unknown = [name for name in args if name not in BENCHES]
    if unknown:
        print(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(BENCHES)}")
        return 2
    names = args or list(BENCHES)
    failed: list[str] = []
    for name in names:
        command = [sys.executable, "-m", f"bench.{name}", *extra]
        print(f"\n===== {' '.join(command[1:])} =====", flush=True)
        started = time.monotonic()
        code = subprocess.run(command, cwd=ROOT, check=False).returncode
        elapsed = time.monotonic() - started
        status = "ok" if code == 0 else f"FAILED (exit code {code})"
        print(f"===== bench.{name}: {status} after {elapsed:.0f} s =====", flush=True)
        if code != 0:
            failed.append(name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
