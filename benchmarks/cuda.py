"""The device side the GPU benchmarks (gpu_throughput, gpu_optim) share: the check that a CUDA GPU is
there, its name and peak, and spans of work timed with the peak memory they reach. torch is imported
only when a function needs it, so a benchmark's --help stays quick."""

from __future__ import annotations

import sys
import time

from actors.flops import PEAK_TFLOPS

PEAK_FLOPS = {name: tflops * 1e12 for name, tflops in PEAK_TFLOPS.items()}  # the runs' own table (actors/flops.py)


def gib(n: float) -> float:
    """Bytes in GiB, to 2 decimals."""
    return round(n / 2**30, 2)


def no_gpu(script: str) -> int:
    """One line on stderr: `script` (e.g. benchmarks/gpu_optim.py) needs a CUDA GPU. The exit code, 2."""
    print(f"error: {script} needs a CUDA GPU; none is visible to torch (--cpu-smoke runs it on CPU)", file=sys.stderr)
    return 2


def gpu_and_peak(cuda: bool) -> tuple[str, float | None]:
    """The GPU's name ('cpu (smoke)' when not `cuda`) and its dense 16-bit peak FLOP/s (None: not in PEAK_FLOPS)."""
    import torch

    gpu = torch.cuda.get_device_name() if cuda else "cpu (smoke)"
    return gpu, next((v for k, v in PEAK_FLOPS.items() if k in gpu), None)


class Stopwatch:
    """Times spans of work on the device. On CUDA it waits for the queued work at both ends of a span (so the
    seconds are the GPU's, not those of launching it) and reads the peak memory; on CPU the peaks are 0."""

    def __init__(self, cuda: bool):
        self.cuda = cuda

    def start(self, reset_peak: bool = True) -> float:
        """Wait for the queued work, reset the peak-memory counters (with reset_peak=False the peak runs on
        from the last reset), and read the clock."""
        if self.cuda:
            import torch

            torch.cuda.synchronize()
            if reset_peak:
                torch.cuda.reset_peak_memory_stats()
        return time.perf_counter()

    def stop(self, t0: float) -> dict:
        """Wait for the queued work: the seconds since `t0` ("s") and peak() since the last reset."""
        if self.cuda:
            import torch

            torch.cuda.synchronize()
        return {"s": time.perf_counter() - t0} | self.peak()

    def peak(self) -> dict:
        """The most bytes allocated ("peak") and reserved ("reserved") since the counters were last reset."""
        if not self.cuda:
            return {"peak": 0, "reserved": 0}
        import torch

        return {"peak": torch.cuda.max_memory_allocated(), "reserved": torch.cuda.max_memory_reserved()}

    def release(self) -> None:
        """Between settings: give the cached blocks back and reset the peak-memory counters."""
        if self.cuda:
            import torch

            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
