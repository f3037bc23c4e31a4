"""Run independent jobs side by side, one CPU core each: forked processes where fork is safe.

A cached generation step is dozens of tiny torch calls, and at the batch sizes short and medium
files use, most of its time is Python and dispatch overhead that holds the GIL. Measured on the
2-core EPYC (small model, fp32): two *threads* stepping batches of 8 took 2.5x as long as one
thread doing the same work once, while two forked *processes* took 1.07x. So on Linux each
worker is a process forked from this one: it inherits the model, the latent and any monkeypatch
without pickling them, runs its jobs on one intra-op thread, and sends each job's result back
through a pipe. Where fork is not safe (macOS, Windows) the workers are threads.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
import warnings
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from multiprocessing.connection import Connection
from multiprocessing.connection import wait as wait_for_pipes
from typing import TypeVar

import numpy as np
import torch

from .stop import held_during_fork, in_worker, raise_if_stopped

T = TypeVar("T")

REPORT_SECONDS = 0.2
"""How often the calling thread calls ``report()`` while workers run."""


def forking() -> bool:
    """True where workers are forked processes (Linux); elsewhere they are threads."""
    return sys.platform.startswith("linux")


def shared_counters(count: int) -> np.ndarray:
    """``count`` int64 zeros that forked workers can write and the caller read: progress."""
    return np.frombuffer(multiprocessing.RawArray("q", count), dtype=np.int64)


def run_workers(
    run: Callable[[int], T],
    jobs: int,
    workers: int,
    stop: threading.Event | None = None,
    report: Callable[[], object] | None = None,
) -> list[T]:
    """``[run(0), ..., run(jobs - 1)]`` computed by ``workers`` workers of one intra-op thread.

    Results come back in job order. The first error in any job is raised here and the other
    workers are stopped: forked ones are killed, threads see ``stop`` set (a long ``run`` should
    check it). ``report()`` is called from the calling thread every ``REPORT_SECONDS``. Torch's
    thread count is restored afterwards.
    """
    stop = stop or threading.Event()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # new threads read this when they start; forks inherit it
    try:
        if workers <= 1 or jobs <= 1:
            return [run(job) for job in range(jobs)]
        if forking():
            return _run_in_processes(run, jobs, workers, report)
        return _run_in_threads(run, jobs, workers, stop, report)
    finally:
        torch.set_num_threads(threads)


def _run_in_threads(
    run: Callable[[int], T],
    jobs: int,
    workers: int,
    stop: threading.Event,
    report: Callable[[], object] | None,
) -> list[T]:
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="musictranslate-worker")

    def task(job: int) -> T:
        with torch.inference_mode():
            return run(job)

    try:
        futures = [pool.submit(task, job) for job in range(jobs)]
        pending = set(futures)
        while pending:
            finished, pending = wait(pending, timeout=REPORT_SECONDS, return_when=FIRST_EXCEPTION)
            if report is not None:
                report()
            for future in finished:
                future.result()  # the first error propagates
        return [future.result() for future in futures]
    except BaseException:
        stop.set()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _worker(run: Callable[[int], T], jobs: list[int], results: Connection, parent: int) -> None:
    """A forked worker's whole life: its jobs, each result or the first error, then exit."""
    in_worker(parent)
    try:
        with torch.inference_mode():
            for job in jobs:
                results.send(("result", job, run(job)))
    except BaseException as exc:  # noqa: BLE001 - every failure goes to the parent
        try:
            results.send(("error", -1, exc))
        except Exception:  # an exception that does not pickle
            results.send(("error", -1, RuntimeError(f"{type(exc).__name__}: {exc}")))
    finally:
        results.close()
        # skip the interpreter's exit: it would flush streams and run handlers that belong to
        # the parent (a progress display's refresh thread may hold their locks)
        os._exit(0)


def _run_in_processes(
    run: Callable[[int], T], jobs: int, workers: int, report: Callable[[], object] | None
) -> list[T]:
    context = multiprocessing.get_context("fork")
    processes, pipes = [], []
    try:
        for worker in range(min(workers, jobs)):
            receiver, sender = context.Pipe(duplex=False)
            process = context.Process(
                target=_worker,
                args=(run, list(range(worker, jobs, workers)), sender, os.getpid()),
                daemon=True,
            )
            with warnings.catch_warnings(), held_during_fork():
                warnings.simplefilter("ignore", DeprecationWarning)  # Python >= 3.12: fork with threads
                process.start()
            sender.close()
            processes.append(process)
            pipes.append(receiver)
        results: dict[int, T] = {}
        while pipes:
            for pipe in wait_for_pipes(pipes, timeout=REPORT_SECONDS):
                try:
                    kind, job, value = pipe.recv()
                except EOFError:
                    pipes.remove(pipe)
                    continue
                if kind == "error":
                    raise value
                results[job] = value
            raise_if_stopped()
            if report is not None:
                report()
        if len(results) < jobs:
            codes = ", ".join(str(p.exitcode) for p in processes)
            raise RuntimeError(
                f"a worker process died before finishing (exit codes {codes}); if it ran out of "
                "memory, use fewer workers or a smaller batch size"
            )
        return [results[job] for job in range(jobs)]
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
            process.join()
