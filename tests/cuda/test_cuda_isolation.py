"""The CPU engine never imports numba.cuda: a machine where numba-cuda is missing or broken still trains.

These run in child processes (this one has imported numba.cuda for the other CUDA tests), and they run
whether or not the CUDA tests can (conftest.py does not skip this file).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CUDA_MODULES = "[m for m in sys.modules if m == 'numba_cuda' or m.startswith(('numba.cuda', 'numba_cuda.', 'cuda.'))]"


def _run(code: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)


def test_cpu_engine_does_not_import_numba_cuda():
    proc = _run("import sys\n"
                "import simulator.session, simulator.api, simulator.cli, simulator.kernels, simulator.kernels.cuda\n"
                "import simulator.kernels.cuda.table, simulator.kernels.cuda.philox  # pure: no numba.cuda\n"
                "import simulator.backend\n"
                "simulator.backend.get_backend('cpu'), simulator.backend.resolve('auto')  # the probe: ctypes only\n"
                f"print({CUDA_MODULES})\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]", f"the CPU path imported {proc.stdout.strip()}"


def test_cpu_trains_where_numba_cuda_cannot_be_imported():
    """numba.cuda made unimportable (as where numba-cuda is broken): a session still builds and steps."""
    proc = _run(
        "import sys\n"
        "sys.modules['numba.cuda'] = None  # any import of it now raises ImportError\n"
        "sys.modules['numba_cuda'] = None\n"
        "from simulator.config import ModelConfig, OptimConfig, RunConfig, TrainConfig\n"
        "from simulator.session import TrainingSession\n"
        "cfg = RunConfig(name='t', model=ModelConfig(d_model=16, n_layer=1, n_head=2, seq_len=8),\n"
        "                optim=OptimConfig(lr=3e-3), train=TrainConfig(batch_size=2, seed=1))\n"
        "s = TrainingSession(cfg)\n"
        "a, b = s.step().loss, s.step().loss\n"
        "assert a == a and b == b, (a, b)\n"
        "print('trained', a, b)\n")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("trained")
