"""Long computations in a separate Python process, so Slicer's GUI stays responsive and can cancel.

The child runs the library's command line (``python -m IDHPredictorLib.cli --progress-lines ...``,
with Slicer's ``PythonSlicer`` as ``python``) and reports progress as plain lines on stdout; the
parent reads them on a thread and the GUI polls ``BackgroundJob.progress`` from a timer, as
SlicerMONAIAuto3DSeg does. Outputs are written atomically by the CLI, so a cancelled job leaves
no half-written file.
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

PREFIX = "IDHPREDICTOR-PROGRESS"
LIBRARY_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class JobProgress:
    """``done`` of ``total`` steps of the stage named ``description``."""

    done: int
    total: int
    description: str

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 0.0


def progress_line(done: int, total: int, description: str) -> str:
    """The line a child prints for one progress step."""
    return f"{PREFIX} {done} {total} {description}"


def parse_progress_line(line: str) -> JobProgress | None:
    """The progress a line reports, or None for any other output."""
    parts = line.rstrip("\n").split(" ", 3)
    if len(parts) < 3 or parts[0] != PREFIX or not (parts[1].isdigit() and parts[2].isdigit()):
        return None
    return JobProgress(int(parts[1]), int(parts[2]), parts[3] if len(parts) > 3 else "")


class JobCancelled(RuntimeError):
    """The user cancelled the job."""


class JobFailed(RuntimeError):
    """The child process failed: the message is its last error line, ``log`` its whole output."""

    def __init__(self, message: str, log: str) -> None:
        super().__init__(message)
        self.log = log


class BackgroundJob:
    """One ``idh-predictor`` command running in a child process; poll it, wait for it or cancel it.
    ``workdir`` is the job's scratch folder (its inputs and outputs), kept for the caller."""

    def __init__(self, arguments: Sequence[str], python: str | None = None, env: Mapping[str, str] | None = None,
                 workdir: Path | None = None) -> None:
        self.workdir = workdir
        self.command = [python or sys.executable, "-m", "IDHPredictorLib.cli", "--progress-lines", *arguments]
        child_env = {**os.environ, **(env or {})}
        child_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(LIBRARY_ROOT), child_env.get("PYTHONPATH")]))
        self._log: collections.deque[str] = collections.deque(maxlen=200)
        self._progress: JobProgress | None = None
        self._cancelled = False
        # Own process group (POSIX session / Windows group, no console window): cancel reaches the whole tree.
        windows_flags = subprocess.CREATE_NEW_PROCESS_GROUP | subprocess.CREATE_NO_WINDOW if os.name == "nt" else 0
        self._process = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                         bufsize=1, env=child_env, start_new_session=os.name == "posix",
                                         creationflags=windows_flags)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @property
    def log_path(self) -> Path | None:
        """The child's whole output (progress lines left out), kept in the job's folder."""
        return self.workdir / "job.log" if self.workdir is not None else None

    def _read(self) -> None:
        log_file = open(self.log_path, "a", encoding="utf-8") if self.log_path else None  # noqa: SIM115 (closed below)
        try:
            for line in self._process.stdout:
                progress = parse_progress_line(line)
                if progress is not None:
                    self._progress = progress
                elif line.strip():
                    self._log.append(line.rstrip())
                    if log_file:
                        log_file.write(line)
                        log_file.flush()
        finally:
            if log_file:
                log_file.close()

    @property
    def progress(self) -> JobProgress | None:
        """The latest progress the child reported."""
        return self._progress

    @property
    def running(self) -> bool:
        return self._process.poll() is None

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    @property
    def output(self) -> str:
        """The child's last output lines (other than progress)."""
        return "\n".join(self._log)

    def cancel(self, grace_s: float = 5.0) -> None:
        """Stop the child (and anything it started): terminate, then kill after ``grace_s``."""
        if not self.running:
            return
        self._cancelled = True
        if os.name == "posix":
            os.killpg(self._process.pid, signal.SIGTERM)
        else:  # terminate() would end only the launcher; taskkill /T ends the tree (psutil is not in Slicer's Python)
            subprocess.run(["taskkill", "/T", "/F", "/PID", str(self._process.pid)], capture_output=True, check=False)
        try:
            self._process.wait(grace_s)
        except subprocess.TimeoutExpired:
            if os.name == "posix":
                os.killpg(self._process.pid, signal.SIGKILL)
            else:
                self._process.kill()
            self._process.wait()

    def wait(self, timeout_s: float | None = None) -> None:
        """Block until the child ends; raise ``JobCancelled`` or ``JobFailed`` (with the child's
        error message and output) unless it succeeded."""
        self._process.wait(timeout_s)
        self.check()

    def check(self) -> None:
        """After the child ended: raise unless it succeeded."""
        self._reader.join(5.0)
        if self._cancelled:
            raise JobCancelled("Cancelled.")
        if self._process.returncode:
            message = self._log[-1] if self._log else f"exit status {self._process.returncode}"
            raise JobFailed(message.removeprefix("idh-predictor: error: "), self.output)
