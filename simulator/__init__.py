"""transformer-sim's engine: a small GPT trained by numba kernels, stepped whole or phase by phase.

Two process-wide settings must be made before numba starts, so they live here:

* OpenMP threads that spin while waiting steal the only other core from
  OpenBLAS on a small machine (measured: 168 ms vs 22 ms per tiny step on 2
  cores), so numba's OpenMP pool waits passively unless the user says otherwise.
* Compiled kernels are cached next to the sources; when the install location
  is not writable, in a per-user cache folder instead.
"""

import os
from pathlib import Path

USER_ENVIRON = dict(os.environ)  # as the user started us: what the bench gives its PyTorch child
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

if "NUMBA_CACHE_DIR" not in os.environ and not os.access(Path(__file__).parent, os.W_OK):
    _base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    os.environ["NUMBA_CACHE_DIR"] = str(_base / "transformer-sim" / "numba")

__version__ = "0.1.0"
