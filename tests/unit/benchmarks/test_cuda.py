"""benchmarks/cuda.py off the GPU: the device check's one line, the smoke run's name and peak, and a
span timed on CPU (no GPU memory: peaks 0). Its CUDA side runs in the GPU benchmarks themselves."""

from __future__ import annotations

import time

from benchmarks.cuda import PEAK_FLOPS, Stopwatch, gib, gpu_and_peak, no_gpu


def test_no_gpu_says_so_in_one_line_and_gives_exit_code_2(capsys):
    assert no_gpu("benchmarks/x.py") == 2
    assert capsys.readouterr().err.splitlines() == [
        "error: benchmarks/x.py needs a CUDA GPU; none is visible to torch (--cpu-smoke runs it on CPU)"
    ]


def test_a_smoke_run_has_no_gpu_name_and_no_peak():
    assert gpu_and_peak(False) == ("cpu (smoke)", None)
    assert PEAK_FLOPS["H100 SXM"] == 989e12  # actors/flops.py's table is in TFLOP/s, this one in FLOP/s


def test_a_span_on_cpu_has_its_seconds_and_no_peak_memory():
    clock = Stopwatch(cuda=False)
    t0 = clock.start()
    time.sleep(0.01)
    span = clock.stop(t0)
    assert span["s"] >= 0.01 and (span["peak"], span["reserved"]) == (0, 0)
    clock.release()  # nothing to give back on CPU
    assert gib(3 * 2**29) == 1.5
