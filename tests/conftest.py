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
