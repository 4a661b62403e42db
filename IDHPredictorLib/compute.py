"""Where the work runs: per-case tasks and cross-validation folds in this process, in local worker
processes, or on a Dask distributed cluster (``--scheduler ADDRESS`` or ``IDH_PREDICTOR_SCHEDULER``).

Every stage submits its tasks through ``ordered_results`` (folds: all must succeed) or
``map_cases`` (cases: a failing case is reported while the others finish). A cluster run computes
the same tasks with the same arguments and seeds and reduces them in the same order as a local
run, so it gives the same results. Tasks return their results to this process, which is the one
writer of caches and reports; a task that writes files (a phantom case, a batch case) writes only
its own paths, atomically. Dask reschedules the tasks of a worker that dies, so a lost worker costs
only time.

Dask itself (not a hand-written scheduler) does the distribution; ``dask-jobqueue`` gives a
scheduler address on SLURM/PBS clusters, and the same address works here.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import InputError

SCHEDULER_VARIABLE = "IDH_PREDICTOR_SCHEDULER"
WORKER_WAIT_S = 60.0  # how long a command waits for the first worker of a cluster

_client: Any = None  # distributed.Client while inside ``use_scheduler``

Job = tuple[Callable, tuple, dict]  # (function, args, kwargs), as joblib.delayed makes them


@dataclass(frozen=True)
class TaskError:
    """A case whose task raised: its label (the case id) and the error, one line and in full."""

    label: str
    message: str
    details: str

    def as_dict(self) -> dict[str, str]:
        """The case, its error and (for an unexpected error) the traceback."""
        return {"case_id": self.label, "error": self.message, **({"traceback": self.details} if self.details else {})}


class CasesFailed(InputError):
    """Some cases failed while the others completed; ``failures`` names each one with its error."""

    def __init__(self, what: str, failures: list[TaskError], total: int) -> None:
        self.failures = failures
        listing = "; ".join(f"{f.label}: {f.message}" for f in failures)
        super().__init__(None, f"{len(failures)} of {total} cases failed in {what} ({listing})",
                         "Fix or remove those cases and run the command again")
        self.what, self.total = what, total

    def __reduce__(self) -> tuple:
        return type(self), (self.what, self.failures, self.total)


def scheduler_address(option: str | None = None) -> str | None:
    """The Dask scheduler to use: the ``--scheduler`` option, else ``IDH_PREDICTOR_SCHEDULER``, else none (local)."""
    return option or os.environ.get(SCHEDULER_VARIABLE) or None


def source_digest() -> str:
    """Hash of the library's source files: a cluster's workers must run the same code as this process."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).resolve().parent.rglob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _sees_paths(paths: list[str]) -> list[str]:
    """(Runs on each worker) the paths of ``paths`` this worker cannot see."""
    return [path for path in paths if not os.path.exists(path)]


@contextlib.contextmanager
def use_scheduler(address: str | None, shared_paths: Sequence[str | Path] = ()) -> Iterator[None]:
    """Run the tasks submitted inside this block on the Dask cluster at ``address`` (nothing changes
    when it is None). Refuses, naming the fix, a scheduler that cannot be reached, a cluster without
    workers, workers running other code, and workers that cannot see ``shared_paths`` (cohort and
    output folders must be on a file system the workers share)."""
    global _client
    if address is None:
        yield
        return
    try:
        from distributed import Client
    except ImportError as error:
        raise InputError(address, "is a Dask scheduler, but Dask distributed is not installed",
                         "pip install 'idhpredictor[cluster]'") from error
    try:
        client = Client(address, timeout="10s", set_as_default=False)
    except OSError as error:
        raise InputError(address, f"no Dask scheduler answers there ({error})",
                         "Start one with `dask scheduler` and workers with `dask worker ADDRESS`, or drop --scheduler") from None
    try:
        try:
            client.wait_for_workers(1, timeout=WORKER_WAIT_S)
        except TimeoutError:
            raise InputError(address, f"the Dask scheduler has no workers after {WORKER_WAIT_S:.0f} s",
                             "Start workers with `dask worker ADDRESS`") from None
        ours = source_digest()
        others = {worker: digest for worker, digest in client.run(source_digest).items() if digest != ours}
        if others:
            raise InputError(address, f"workers {', '.join(sorted(others))} run other IDHPredictor code than this process",
                             "Install the same version of IDHPredictor on every worker")
        wanted = [str(Path(p).resolve()) for p in shared_paths]
        blind = {worker: missing for worker, missing in client.run(_sees_paths, wanted).items() if missing}
        if blind:
            worker, missing = next(iter(blind.items()))
            raise InputError(missing[0], f"cannot be seen by worker {worker}",
                             "Put cohorts and outputs on a file system every worker mounts at the same path")
        _client = client
        yield
    finally:
        _client = None
        client.close()


def on_cluster() -> bool:
    """True inside ``use_scheduler`` with an address (tasks go to the cluster)."""
    return _client is not None


def _inside_cluster_worker() -> bool:
    """True in a task running on a Dask worker: nested work then runs in that task's process."""
    if "distributed" not in sys.modules:
        return False
    from distributed import get_worker

    try:
        get_worker()
    except ValueError:
        return False
    return True


def _submit(jobs: list[Job]) -> list:
    """Submit ``jobs`` to the cluster; an argument object shared by several jobs (a feature matrix,
    the DSC windows) is sent to the cluster once and referenced by each job."""
    counts: dict[int, int] = {}
    for _, args, kwargs in jobs:
        for value in (*args, *kwargs.values()):
            counts[id(value)] = counts.get(id(value), 0) + 1
    shared: dict[int, Any] = {}

    def sent(value: Any) -> Any:
        if counts[id(value)] < 2 or isinstance(value, (int, float, str, bool, type(None))) or callable(value):
            return value
        if id(value) not in shared:
            shared[id(value)] = _client.scatter([value], hash=False)[0]
        return shared[id(value)]

    return [_client.submit(function, *map(sent, args), pure=False, **{k: sent(v) for k, v in kwargs.items()})
            for function, args, kwargs in jobs]


def ordered_results(jobs: list[Job], workers: int = 1) -> Iterator:
    """The results of ``jobs`` (joblib ``delayed`` calls) in their order: on the cluster inside
    ``use_scheduler``, else in ``workers`` local processes when more than one, else here. Lazy, so
    that progress can be shown as each one arrives; the first failure raises."""
    if on_cluster():
        client, futures = _client, _submit(jobs)
        try:
            for future in futures:
                yield future.result()
        finally:
            client.cancel(futures)
        return
    if workers > 1 and not _inside_cluster_worker():
        from joblib import Parallel

        yield from Parallel(n_jobs=workers, return_as="generator")(jobs)
        return
    yield from (function(*args, **kwargs) for function, args, kwargs in jobs)


def _failure(label: str, error: BaseException) -> TaskError:
    """A case's error: the message of bad input (it names the file and the fix), else the type,
    message and traceback of the unexpected one."""
    if isinstance(error, InputError):
        return TaskError(label, str(error), "")
    details = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    return TaskError(label, f"{type(error).__name__}: {error}", details)


def _captured(function: Callable, index: int, label: str, args: tuple) -> tuple[int, object]:
    """(Runs in a local worker process) the case's index and its result, or its ``TaskError``."""
    try:
        return index, function(*args)
    except Exception as error:  # reported per case; the other cases go on
        return index, _failure(label, error)


def map_cases(function: Callable, arguments: Sequence[tuple], labels: Sequence[str], workers: int = 1,
              progress: Callable[[int, int], None] | None = None,
              on_result: Callable[[int, object], None] | None = None) -> list:
    """``function(*arguments[i])`` for every case, on the cluster inside ``use_scheduler``, else in
    ``workers`` local processes (here when 1). Every case runs to the end: the list holds each
    case's result, or a ``TaskError`` for a case that raised. ``progress(done, total)`` counts
    finished cases across the cluster, in the order they finish; ``on_result(i, result)`` is called
    here as each case succeeds (e.g. to cache it, so that an interrupted run keeps what it did)."""
    total = len(arguments)
    results: list = [None] * total
    done = 0
    if progress:
        progress(0, total)

    def finished(index: int, outcome: Callable[[], object]) -> None:
        nonlocal done
        try:
            results[index] = outcome()
        except Exception as error:  # reported per case; the other cases go on
            results[index] = _failure(labels[index], error)
        if on_result and not isinstance(results[index], TaskError):
            on_result(index, results[index])
        done += 1
        if progress:
            progress(done, total)

    if on_cluster():
        from distributed import as_completed as cluster_completed

        futures = [_client.submit(function, *args, pure=False, key=f"{getattr(function, '__name__', 'task')}-{label}-{os.urandom(4).hex()}")
                   for args, label in zip(arguments, labels)]
        index_of = {future.key: index for index, future in enumerate(futures)}
        try:
            with _client.as_current():  # as_completed finds its client there
                for future in cluster_completed(futures):
                    finished(index_of[future.key], future.result)
        finally:
            _client.cancel(futures)
    elif workers > 1 and total > 1 and not _inside_cluster_worker():
        # joblib's loky processes, not a forked pool: a fork after torch has started its threads can deadlock
        from joblib import Parallel, delayed

        jobs = (delayed(_captured)(function, index, labels[index], args) for index, args in enumerate(arguments))
        for index, outcome in Parallel(n_jobs=min(workers, total), return_as="generator_unordered")(jobs):
            finished(index, lambda o=outcome: o)
    else:
        for index, args in enumerate(arguments):
            finished(index, lambda a=args: function(*a))
    return results


def failures_of(results: Sequence) -> list[TaskError]:
    """The ``TaskError`` entries of ``map_cases`` results."""
    return [result for result in results if isinstance(result, TaskError)]


def all_succeeded(results: list, what: str) -> list:
    """``results`` of ``map_cases`` when every case succeeded; else ``CasesFailed`` naming each
    failed case (raised after all the others have finished)."""
    failures = failures_of(results)
    if failures:
        raise CasesFailed(what, failures, len(results))
    return results
