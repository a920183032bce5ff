"""Model manifests: what a model file is, and proof it is the file that was exported."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path


class ModelIntegrityError(RuntimeError):
    """A model file is missing or its sha256 differs from the manifest: never loaded."""


@dataclass(frozen=True)
class Manifest:
    path: Path
    data: dict

    @classmethod
    def load(cls, path: str | Path) -> Manifest:
        p = Path(path)
        try:
            return cls(p, json.loads(p.read_text(encoding="utf-8")))
        except OSError as exc:
            raise ModelIntegrityError(f"cannot read model manifest {p}: {exc.strerror}") from None
        except json.JSONDecodeError as exc:
            raise ModelIntegrityError(f"model manifest {p} is not valid JSON: {exc}") from None

    def file(self, key: str) -> Path:
        """The verified path of file ``key`` (e.g. ``onnx_fp32``)."""
        files = self.data.get("files", {})
        if key not in files:
            raise ModelIntegrityError(f"{self.path}: no file {key!r} (has {sorted(files)})")
        entry = files[key]
        target = self.path.parent / entry["path"]
        if not target.exists():
            raise ModelIntegrityError(f"{self.path}: model file {target} is missing")
        digest = hashlib.sha256(target.read_bytes()).hexdigest()
        if digest != entry["sha256"]:
            raise ModelIntegrityError(
                f"{target}: sha256 {digest[:12]}… does not match the manifest's "
                f"{entry['sha256'][:12]}…; refusing to load a modified model"
            )
        return target

    @property
    def classes(self) -> list[str]:
        return list(self.data["classes"])
