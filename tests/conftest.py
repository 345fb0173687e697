"""Shared test setup: the repository root on sys.path, so `import simulator` works without installing."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# The suite reads English output; a developer's Chinese locale must not change that (children inherit it).
# Tests of the Chinese catalogs switch explicitly.
import os  # noqa: E402

os.environ["TRANSFORMER_SIM_LANG"] = "en"

# Under pytest-xdist (scripts/test.sh runs one worker per core) each worker is a single-threaded process: a
# worker's BLAS and numba threads would only fight the other workers for the cores, and OpenBLAS's threads spin
# while they wait, which made a small step many times slower. Children a test starts inherit this.
if os.environ.get("PYTEST_XDIST_WORKER"):
    for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ.setdefault(_var, "1")
