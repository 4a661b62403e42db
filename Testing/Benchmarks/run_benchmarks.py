"""Run every ``bench_*.py`` here in its own process, record each one's wall time and peak
memory (the child's maximum resident set size), then write ``RESULTS.md`` with the command,
machine, date and each benchmark's printed table, and ``results/runner.json``. Given names, run
only those and replace their sections (each section says the date it was measured).

    python Testing/Benchmarks/run_benchmarks.py [bench_cluster ...]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
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


def _section(name: str, stdout: str, seconds: float, peak_mb: float) -> str:
    return (f"### {name}\n\nWall {seconds:.0f} s, peak memory {peak_mb:.0f} MB; measured {dt.date.today().isoformat()}.\n\n"
            f"```\n{stdout.strip()}\n```\n")


def _replace_sections(text: str, sections: dict[str, str]) -> str:
    """``text`` with each named section replaced (or appended, for a new benchmark)."""
    for name, section in sections.items():
        pattern = re.compile(rf"### {re.escape(name)}\n.*?(?=^### |\Z)", re.S | re.M)
        text = pattern.sub(lambda _match, s=section: s + "\n", text, count=1) if pattern.search(text) \
            else text.rstrip("\n") + "\n\n" + section
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description="run the benchmarks and write RESULTS.md")
    parser.add_argument("names", nargs="*", help="only these benchmarks (e.g. bench_cluster); their sections are replaced")
    args = parser.parse_args()
    scripts = [HERE / f"{name.removesuffix('.py')}.py" for name in args.names] or sorted(HERE.glob("bench_*.py"))
    sections, summary = {}, {}
    for script in scripts:
        print(f"== {script.name}", flush=True)
        stdout, seconds, peak_mb = run_script(script)
        print(stdout, end="")
        print(f"(wall {seconds:.0f} s, peak memory {peak_mb:.0f} MB)")
        summary[script.stem] = {"wall_s": round(seconds, 1), "peak_memory_mb": round(peak_mb),
                                "date": dt.date.today().isoformat()}
        sections[script.name] = _section(script.name, stdout, seconds, peak_mb)
    machine = f"{platform.platform()}, {os.cpu_count()} logical CPUs, Python {platform.python_version()}"
    header = (f"# Benchmark results\n\nCommand: `python Testing/Benchmarks/run_benchmarks.py`  \n"
              f"Machine: {machine}  \nDate: {dt.date.today().isoformat()}\n\n")
    runner = HERE / "results" / "runner.json"
    record = {"machine": machine, "date": dt.date.today().isoformat()}  # of the last full run
    if args.names:
        text = _replace_sections((HERE / "RESULTS.md").read_text(encoding="utf-8"), sections)
        earlier = json.loads(runner.read_text())
        record, summary = {"machine": earlier["machine"], "date": earlier["date"]}, {**earlier["benchmarks"], **summary}
    else:
        text = header + "\n".join(sections.values())
    (HERE / "RESULTS.md").write_text(text, encoding="utf-8")
    runner.write_text(json.dumps({**record, "benchmarks": summary}, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {HERE / 'RESULTS.md'}")


if __name__ == "__main__":
    main()
