"""The case-job lifecycle both front ends share: start, poll, cancel, finish on the job's own case.

The Slicer widget (a Qt timer) and the web app (an asyncio task) call ``poll`` and show what the
controller tells their ``JobView``; neither holds job state of its own. While a job runs, only
``cancel`` is allowed: loading another case or opening the Segment Editor mid-job would edit the
nodes the job is about to replace.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from .background import JobCancelled, JobFailed, JobProgress
from .case_jobs import CaseJob, CaseResult
from .scene_workflow import SceneCase

ALWAYS_ALLOWED = frozenset({"cancel"})


class JobView(Protocol):
    """What a front end shows of the running job."""

    def show_busy(self, message: str | None) -> None:
        """A job started (``message``) or none runs any more (None): progress and cancel shown or hidden."""

    def show_progress(self, progress: JobProgress) -> None:
        """The job reported ``progress.done`` of ``progress.total``."""

    def show_result(self, result: CaseResult, case: SceneCase) -> None:
        """The job finished; its result is on ``case``'s nodes (the case it started on, which may
        no longer be the one selected)."""

    def show_error(self, message: str, details: str) -> None:
        """The job failed (``details``: the child's output) or was cancelled (empty details)."""


class JobController:
    """Runs at most one ``CaseJob`` at a time for a front end and tells its view what happens."""

    def __init__(self, scene: object, view: JobView) -> None:
        self.scene = scene
        self.view = view
        self.job: CaseJob | None = None
        self._last_progress: JobProgress | None = None

    @property
    def busy(self) -> bool:
        return self.job is not None

    def allows(self, action: str) -> bool:
        """Whether a front-end action (``load``, ``segment``, ``correct``, ``dlr``, ...) may run now."""
        return not self.busy or action in ALWAYS_ALLOWED

    def start(self, starter: Callable[[], CaseJob], message: str) -> CaseJob:
        """Start the job ``starter`` makes (it raises on bad input, before anything runs)."""
        if self.busy:
            raise RuntimeError(f"A {self.job.kind} job is running for {self.job.case.case_id}; wait for it or cancel it.")
        self.job = starter()
        self._last_progress = None
        self.view.show_busy(message)
        return self.job

    def poll(self) -> CaseResult | None:
        """Pass on new progress; when the job has ended, finish it on its own case and report the
        result, the failure or the cancellation. Returns the result once, else None."""
        job = self.job
        if job is None:
            return None
        if job.progress is not None and job.progress != self._last_progress:
            self._last_progress = job.progress
            self.view.show_progress(job.progress)
        if job.running:
            return None
        self.job = None
        self.view.show_busy(None)
        try:
            result = job.finish(self.scene)
        except JobCancelled:
            self.view.show_error("Cancelled.", "")
        except JobFailed as error:
            self.view.show_error(f"The {job.kind} job for {job.case.case_id} failed: {error}", error.log)
        except Exception as error:  # reading the outputs back failed: still the job's failure, shown, not lost
            self.view.show_error(f"The {job.kind} job for {job.case.case_id} could not be finished: {error}", job.log)
        else:
            self.view.show_result(result, job.case)
            return result
        return None

    def cancel(self) -> None:
        """Ask the running job's process tree to stop; the next ``poll`` reports it."""
        if self.job is not None:
            self.job.cancel()
