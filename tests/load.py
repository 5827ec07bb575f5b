"""A busy machine for tests: CPU load that a test starts and stops, and how slow the machine is now.

Production machines are busy, so the fault tests run with every core taken by more than
one spinning process (:class:`CpuLoad`). Bounds that are about correctness ("every image
ends done or failed") must not be wall-clock seconds that a busy machine misses; where a
test still needs a deadline, :func:`scaled` stretches it by :func:`slowness`, measured
now, and :func:`tests.helpers.wait_for` extends its own deadline the same way before it
gives up. Speed goals belong in ``bench/``.
"""
from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import time

# Seconds one spin of :func:`_spin` takes on one idle core of a 2020s server CPU (measured
# 0.021 s on an idle core of this project's Xeon); a slower or busier machine measures more.
REFERENCE_SPIN_S = 0.02
SPIN_ROUNDS = 400_000
MAX_SLOWNESS = 20.0  # a machine 20x slower than the reference is broken, not busy


def _spin(rounds: int = SPIN_ROUNDS) -> int:
    total = 0
    for i in range(rounds):
        total += i * i % 7
    return total


def slowness(samples: int = 3) -> float:
    """How many times longer than on an idle reference core a fixed piece of Python takes
    right now (at least 1): about 1 on a quiet machine, 3 to 6 on two cores at load 6 to 12.

    Measured in this process, so it sees what this process gets of the CPU; costs about
    ``samples`` x 20 ms on a quiet machine. A process that has just woken up is favoured
    by the scheduler for a few milliseconds, which can make a busy machine look quiet, so
    the one-minute load average per core counts too (it lags, but never flatters).
    """
    times = []
    for _ in range(samples):
        start = time.perf_counter()
        _spin()
        times.append(time.perf_counter() - start)
    measured = statistics.median(times) / REFERENCE_SPIN_S
    per_core = os.getloadavg()[0] / (os.cpu_count() or 1)
    return min(MAX_SLOWNESS, max(1.0, measured, per_core))


def scaled(seconds: float) -> float:
    """``seconds`` stretched by how slow the machine is right now (never shortened)."""
    return seconds * slowness()


def busy_processes() -> int:
    """Spinning processes for a saturated machine: twice the cores, at least four."""
    return max(4, 2 * (os.cpu_count() or 1))


class CpuLoad:
    """``count`` processes that each spin on a core until stopped (default: twice the cores).

    A context manager: ``with CpuLoad(): ...``. The processes run in a process group of
    their own at normal priority, so the code under test competes with them as it would
    with a neighbour's work; ``stop()`` (also at exit from the block) kills the group.
    """

    def __init__(self, count: int | None = None):
        self.count = count or busy_processes()
        self.processes: list[subprocess.Popen] = []

    def start(self) -> CpuLoad:
        code = "import signal; signal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True: pass"
        for _ in range(self.count):
            self.processes.append(subprocess.Popen([sys.executable, "-c", code], start_new_session=True,
                                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        return self

    def stop(self) -> None:
        for process in self.processes:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait(timeout=10)
        self.processes.clear()

    @property
    def running(self) -> int:
        return sum(process.poll() is None for process in self.processes)

    def __enter__(self) -> CpuLoad:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()
