"""CPU threads for training on a machine that others share.

torch's intra-op threads (OpenMP) spin while they wait for each other. When
another busy process holds one of the cores, the thread that lost its core
stalls every parallel region and the spinning ones burn the time it needs:
training the recipe with 2 threads on this 2-core machine next to one
single-threaded job fell to 16-21 clips/s, against 142-149 with 1 thread.

The automatic thread count (train.threads = 0, the default) is the number
of cores idle right now, measured from /proc/stat, and the trainer measures
again each epoch, so a job that starts or ends next to a run moves it. A
single thread has nobody to wait for, so nothing spins. Making the waits
passive instead (OMP_WAIT_POLICY=PASSIVE) was measured and rejected: it
fixes the loaded case but costs a third of the speed on an idle machine
(bench/threads_load.py); a user who wants it can still set it.

A pinned count (train.threads > 0, as the shipped recipe pins 2 so that its
weights do not depend on the machine) is kept as given.
"""

from __future__ import annotations

import os
import time

# Shorter samples misread a core that a busy process shares with the kernel's
# own work; longer ones delay the start of a run for nothing.
SAMPLE_S = 0.25
# A core counts as taken only when it was busy in every one of these windows:
# a job beside the run stays busy, while the VM's bursts (and this process's
# own helpers winding down after an epoch) come and go. With one window, an
# idle 2-core run read a core as taken in some epochs and trained at 0.84x
# the speed of 2 pinned threads (bench/threads_load.py).
SAMPLES = 2


def _cpu_times(cores: set[int]) -> tuple[float, float] | None:
    """(busy, total) jiffies summed over `cores`, or None where /proc/stat is absent."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    busy = total = 0.0
    for line in lines:
        name, *fields = line.split()
        if not name.startswith("cpu") or name == "cpu" or int(name[3:]) not in cores:
            continue
        values = [float(v) for v in fields[:8]]
        idle = values[3] + values[4]  # idle + iowait
        busy += sum(values) - idle
        total += sum(values)
    return busy, total


def free_cores(sample_s: float = SAMPLE_S, samples: int = SAMPLES) -> int:
    """Cores of this process's affinity that nobody else keeps busy, at least 1.

    Measured over `samples` windows of `sample_s` while this process sleeps
    (the trainer calls it between epochs), minus this process's own CPU time
    in each; the most free cores any window saw. Without /proc/stat (not
    Linux) every usable core counts as free.
    """
    try:
        cores = set(os.sched_getaffinity(0))
    except AttributeError:
        return max(1, os.cpu_count() or 1)
    return max(_free_once(cores, sample_s) for _ in range(max(1, samples)))


def _free_once(cores: set[int], sample_s: float) -> int:
    first = _cpu_times(cores)
    if first is None:
        return len(cores)
    own_start = time.process_time()
    time.sleep(sample_s)
    second = _cpu_times(cores)
    own = time.process_time() - own_start
    if second is None or second[1] <= first[1]:
        return len(cores)
    busy_share = (second[0] - first[0]) / (second[1] - first[1])  # 0..1 of all cores
    others = busy_share * len(cores) - own / sample_s
    # A core counts as taken when others used three quarters of it: a busy
    # job takes a whole core, while a VM's background noise must not cost
    # an idle run half its threads (measured: 1 thread is 0.56x of 2 idle).
    return max(1, len(cores) - int(max(0.0, others) + 0.25))


def auto_threads(requested: int, ceiling: int) -> int | None:
    """The intra-op thread count to set for a run, or None to leave torch's as it is.

    Pinned (`requested` > 0): that. A count in OMP_NUM_THREADS (set by the user,
    or by torchrun, which gives each rank 1): None, the launcher decided.
    Otherwise the cores free right now, at most `ceiling` (torch's own default:
    physical cores, which suit small LSTM products better than hyperthreads).
    """
    if requested > 0:
        return requested
    if os.environ.get("OMP_NUM_THREADS"):
        return None
    return min(free_cores(), max(1, ceiling))
