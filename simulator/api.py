"""The engine's public API: what the window (ui/), the CLI and a person's script or notebook use.

`from simulator.api import TrainingSession, load_preset` is the one import a notebook needs.
`PUBLIC_MODULES` are the engine modules ui/ may import (a test checks it, docs/ARCHITECTURE.md names
them); the kernels, the model and the optimizers' internals stay behind `TrainingSession`.
"""

from simulator.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from simulator.config import (
    LIVE_FIELDS,
    AttentionConfig,
    DataConfig,
    EarlyStoppingConfig,
    ModelConfig,
    OptimConfig,
    RunConfig,
    SamplingConfig,
    TrainConfig,
    changed_paths,
    is_structural_change,
)
from simulator.data import DataError
from simulator.early_stopping import EarlyStop
from simulator.gradcheck import GradCheckError, check_gradients
from simulator.optim import lr_at
from simulator.presets import (
    DEFAULT_PRESET,
    PresetError,
    dump_config,
    find_preset,
    list_presets,
    load_any,
    load_preset,
    override,
)
from simulator.records import NonFinite, PhaseEvent, StepRecord
from simulator.runfolder import write_atomically
from simulator.sampling import SamplingError, generate, printable
from simulator.session import NeedsRebuild, SessionError, TrainingSession

# The engine modules ui/ may import. `simulator.lessons` is the lesson registry (and its lessons as
# submodules); the five lesson modules after it are listed until they move into it.
PUBLIC_MODULES = (
    "simulator",  # only `from simulator import config`
    "simulator.api",
    "simulator.session",
    "simulator.config",
    "simulator.presets",
    "simulator.records",
    "simulator.sampling",
    "simulator.checkpoint",
    "simulator.gradcheck",
    "simulator.data",
    "simulator.lessons",  # the registry; each lesson module inside it is public too
    "simulator.i18n",  # `_`, `N_`, `ngettext`: every string a person reads
)


def is_public(module: str) -> bool:
    """True when ui/ may import `module` (a listed module, or a lesson inside simulator.lessons)."""
    return module in PUBLIC_MODULES or module.startswith("simulator.lessons.")


__all__ = [
    "DEFAULT_PRESET", "LIVE_FIELDS", "PUBLIC_MODULES", "AttentionConfig", "CheckpointError", "DataConfig",
    "DataError", "GradCheckError", "ModelConfig", "NeedsRebuild", "NonFinite", "OptimConfig", "PhaseEvent",
    "PresetError", "RunConfig", "SamplingConfig", "SamplingError", "SessionError", "StepRecord", "TrainConfig",
    "TrainingSession", "changed_paths", "check_gradients", "dump_config", "find_preset", "generate",
    "is_public", "is_structural_change", "list_presets", "load_any", "load_checkpoint", "load_preset", "lr_at",
    "override",
    "printable", "save_checkpoint", "EarlyStop", "EarlyStoppingConfig", "write_atomically",
]
