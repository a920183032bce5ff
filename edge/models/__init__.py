"""Model runtime (torch-free): manifests verified by sha256, one runner interface, backends.

Bundled models live in subfolders here with their manifest JSON and model card:
``ulw_sleepnet/`` (per-epoch, ``load_epoch_model``) for PSG and ``mamba_anne/`` (per-second step
with carried state, ``edge.models.step_runner.load_step_model``) for the ANNE One.
"""

from edge.models.manifest import Manifest, ModelIntegrityError, VariantRefused
from edge.models.runner import EpochModel, load_epoch_model

__all__ = ["EpochModel", "Manifest", "ModelIntegrityError", "VariantRefused", "load_epoch_model"]
