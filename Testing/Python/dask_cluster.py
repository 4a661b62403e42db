"""A real Dask cluster on 127.0.0.1 for the tests and the benchmark: a ``dask scheduler`` process
and ``dask worker`` processes (one thread each, bounded memory), every one in its own process
group so that a test can kill a worker outright and the cluster is always stopped at the end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

DASK = [sys.executable, "-m", "dask"]
REPOSITORY = Path(__file__).resolve().parents[2]


class LocalDaskCluster:
    """``with LocalDaskCluster(folder, workers=2) as cluster: cluster.address``."""

    def __init__(self, folder: Path, workers: int = 2, memory_limit: str = "3GB") -> None:
        self.folder, self.workers, self.memory_limit = Path(folder), workers, memory_limit
        self.scheduler_file = self.folder / "scheduler.json"
        self.processes: dict[str, subprocess.Popen] = {}
        self.address = ""

    def _start(self, name: str, command: list[str]) -> subprocess.Popen:
        log = open(self.folder / f"{name}.log", "w")  # noqa: SIM115 (closed with the process)
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPOSITORY, start_new_session=True,
                                   env={**os.environ, "OMP_NUM_THREADS": "1"})
        log.close()
        self.processes[name] = process
        return process

    def start_worker(self, name: str) -> None:
        """Start one more worker (one thread, ``memory_limit``) and wait until the scheduler knows it."""
        self._start(name, [*DASK, "worker", "--scheduler-file", str(self.scheduler_file), "--name", name, "--nthreads", "1",
                           "--memory-limit", self.memory_limit, "--no-dashboard", "--death-timeout", "60"])
        self.wait_for_workers(len([n for n in self.processes if n != "scheduler"]))

    def wait_for_workers(self, count: int, timeout: float = 120) -> None:
        from distributed import Client

        with Client(self.address, timeout="20s") as client:
            client.wait_for_workers(count, timeout=timeout)

    def kill_worker(self, name: str) -> None:
        """SIGKILL the worker and its nanny: a node lost without warning."""
        process = self.processes.pop(name)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def __enter__(self) -> LocalDaskCluster:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._start("scheduler", [*DASK, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                                  "--scheduler-file", str(self.scheduler_file)])
        deadline = time.monotonic() + 60
        while not self.scheduler_file.exists():
            if time.monotonic() > deadline or self.processes["scheduler"].poll() is not None:
                self.__exit__()
                raise RuntimeError(f"the Dask scheduler did not start; see {self.folder / 'scheduler.log'}")
            time.sleep(0.2)
        time.sleep(0.2)  # the file is written whole, but give the writer a moment
        self.address = json.loads(self.scheduler_file.read_text())["address"]
        for index in range(self.workers):
            self.start_worker(f"worker-{index}")
        return self

    def __exit__(self, *_exc: object) -> None:
        for process in self.processes.values():
            try:
                os.killpg(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
        for process in self.processes.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self.processes.clear()
