"""Model runtime (torch-free): manifests verified by sha256, one runner interface, backends.

Bundled models live in subfolders here with their manifest JSON; none is bundled yet (issues
#5 ULW-SleepNet, #6 Mamba).
"""

from edge.models.manifest import Manifest, ModelIntegrityError
from edge.models.runner import EpochModel, load_epoch_model

__all__ = ["EpochModel", "Manifest", "ModelIntegrityError", "load_epoch_model"]
