"""transformer-sim's engine: a small GPT trained by numba kernels, stepped whole or phase by phase.

Two process-wide settings must be made before numba starts, so they live here:

* OpenMP threads that spin while waiting steal the only other core from
  OpenBLAS on a small machine (measured: 168 ms vs 22 ms per tiny step on 2
  cores), so numba's OpenMP pool waits passively unless the user says otherwise.
* The same the other way round: OpenBLAS's workers spin for 2^28 cycles (about
  0.1 s) after each product, so every numba kernel that follows a product ran
  beside a spinning thread. They now sleep after 2^4 cycles (OpenBLAS reads the
  variable when numpy loads it, so it is set before any import of numpy):
  measured on 2 cores, a medium step 661 -> 560 ms and a small one 146 -> 130 ms,
  the tiny step unchanged. A value the user set is kept. A script that imports
  numpy before the engine gets OpenBLAS's default (`NUMPY_BEFORE_ENGINE`).
* Compiled kernels are cached next to the sources; when the install location
  is not writable, in a per-user cache folder instead.
"""

import os
import sys
from pathlib import Path

USER_ENVIRON = dict(os.environ)  # as the user started us: what the bench gives its PyTorch child
# numpy loaded before us (`import numpy` first in a script) read OpenBLAS's variables already: its
# workers then keep spinning after each product, and the bench says so
NUMPY_BEFORE_ENGINE = "numpy" in sys.modules
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

if "NUMBA_CACHE_DIR" not in os.environ and not os.access(Path(__file__).parent, os.W_OK):
    _base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    os.environ["NUMBA_CACHE_DIR"] = str(_base / "transformer-sim" / "numba")

__version__ = "0.1.0"
