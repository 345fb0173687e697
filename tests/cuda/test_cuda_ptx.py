"""Every CUDA kernel compiles for a real GPU (compute capability 9.0), where the CUDA toolchain is installed.

The simulator runs kernels as Python and never meets numba-cuda's GPU compiler; this runs
`python -m simulator.kernels.cuda.ptx_check` in a child process without the simulator, which
compiles each kernel, with the argument types the wrappers launch it with, to PTX through NVVM
(no GPU or driver needed). Skipped, saying why, where NVVM, libdevice or NVRTC cannot be found
(numba-cuda's `[cu12]` / `[cu13]` extras or a CUDA toolkit bring them).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cuda import target

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(target.MODE == "gpu", reason="on a GPU every other CUDA test compiles the kernels already")
def test_every_kernel_compiles_to_ptx():
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run([sys.executable, "-m", "simulator.kernels.cuda.ptx_check", "9.0"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    if proc.returncode == 2:
        pytest.skip(proc.stderr.strip().splitlines()[0] if proc.stderr.strip() else "ptx_check cannot run here")
    assert proc.returncode == 0, proc.stderr[-4000:]
    last = proc.stdout.strip().splitlines()[-1]
    assert "kernel signatures compiled to PTX" in last
    assert int(last.split()[1]) >= 90  # both dtypes of every kernel (96 when written)
