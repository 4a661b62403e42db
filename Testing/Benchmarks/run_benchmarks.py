"""Run every ``bench_*.py`` here in its own process (clean peak-memory numbers), then write
``RESULTS.md`` with the command, machine, date and each benchmark's printed table.

    python Testing/Benchmarks/run_benchmarks.py
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    sections = []
    for script in sorted(HERE.glob("bench_*.py")):
        print(f"== {script.name}", flush=True)
        result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
        print(result.stdout, end="")
        if result.returncode != 0:
            print(result.stderr, file=sys.stderr)
            raise SystemExit(f"{script.name} failed with status {result.returncode}")
        sections.append(f"### {script.name}\n\n```\n{result.stdout.strip()}\n```\n")
    machine = f"{platform.platform()}, {os.cpu_count()} logical CPUs, Python {platform.python_version()}"
    text = (f"# Benchmark results\n\nCommand: `python Testing/Benchmarks/run_benchmarks.py`  \n"
            f"Machine: {machine}  \nDate: {dt.date.today().isoformat()}\n\n" + "\n".join(sections))
    (HERE / "RESULTS.md").write_text(text, encoding="utf-8")
    print(f"wrote {HERE / 'RESULTS.md'}")


if __name__ == "__main__":
    main()
