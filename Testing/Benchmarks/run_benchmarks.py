"""Run every ``bench_*.py`` here in its own process, record each one's wall time and peak
memory (the child's maximum resident set size), then write ``RESULTS.md`` with the command,
machine, date and each benchmark's printed table, and ``results/runner.json``.

    python Testing/Benchmarks/run_benchmarks.py
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run_script(script: Path) -> tuple[str, float, float]:
    """Run one benchmark; return its stdout, wall seconds and peak resident memory in MB."""
    started = time.perf_counter()
    with tempfile.TemporaryFile(mode="w+") as out, tempfile.TemporaryFile(mode="w+") as err:
        child = subprocess.Popen([sys.executable, str(script)], stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(child.pid, 0)  # this child's own rusage: its peak RSS
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        stdout, stderr = out.read(), err.read()
    if child.returncode != 0:
        print(stderr, file=sys.stderr)
        raise SystemExit(f"{script.name} failed with status {child.returncode}")
    return stdout, time.perf_counter() - started, usage.ru_maxrss / 1024  # Linux reports KiB


def main() -> None:
    sections, summary = [], {}
    for script in sorted(HERE.glob("bench_*.py")):
        print(f"== {script.name}", flush=True)
        stdout, seconds, peak_mb = run_script(script)
        print(stdout, end="")
        print(f"(wall {seconds:.0f} s, peak memory {peak_mb:.0f} MB)")
        summary[script.stem] = {"wall_s": round(seconds, 1), "peak_memory_mb": round(peak_mb)}
        sections.append(f"### {script.name}\n\nWall {seconds:.0f} s, peak memory {peak_mb:.0f} MB.\n\n"
                        f"```\n{stdout.strip()}\n```\n")
    machine = f"{platform.platform()}, {os.cpu_count()} logical CPUs, Python {platform.python_version()}"
    text = (f"# Benchmark results\n\nCommand: `python Testing/Benchmarks/run_benchmarks.py`  \n"
            f"Machine: {machine}  \nDate: {dt.date.today().isoformat()}\n\n" + "\n".join(sections))
    (HERE / "RESULTS.md").write_text(text, encoding="utf-8")
    summary = {"machine": machine, "date": dt.date.today().isoformat(), "benchmarks": summary}
    (HERE / "results" / "runner.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {HERE / 'RESULTS.md'}")


if __name__ == "__main__":
    main()
