"""Thread counts for llama.cpp and onnxruntime."""

import os


def default_threads() -> int:
    """1 on <= 2 cores: a second llama.cpp thread stalls whenever anything else wants a core
    (measured: 1.4 s per token instead of 7 ms while another process ran)."""
    cores = os.cpu_count() or 1
    return 1 if cores <= 2 else min(4, cores // 2)


def default_rm_threads() -> int:
    """2 on 2 cores, though the RM runs beside llama.cpp's guessed next step (Engine overlap):
    on the Sapphire Rapids VM, int8 guide, k = 10, that gave 35.6 tok/s against 27.8 with 1
    RM thread (one RM step: 31 ms on 1 thread, 20 ms on 2) and 28.0 with no overlap."""
    cores = os.cpu_count() or 1
    return min(2, cores) if cores <= 2 else min(4, cores // 2)


def rm_threads_may_spin(rm_threads: int) -> bool:
    """Whether onnxruntime's threads may spin between ops rather than sleep: only where the cores are at
    least twice what llama.cpp (at its default) and the RM use, so a spinning thread never holds a core
    llama.cpp wants. On the 16-core Xeon of the H200 machine one guide step (k = 10, 4 threads) took
    5.6 ms spinning against 7.6 ms sleeping (BENCHMARKS.md, "GPU")."""
    cores = os.cpu_count() or 1
    return cores >= 2 * (default_threads() + rm_threads)
