"""Model manifests: what a model file is, and proof it is the file that was exported."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

MIN_AGREEMENT = 0.98  # least held-out agreement with fp32 a served variant needs


class ModelIntegrityError(RuntimeError):
    """A model file is missing or its sha256 differs from the manifest: never loaded."""


class VariantRefused(ModelIntegrityError):
    """A backend × precision whose held-out agreement with fp32 is below the manifest's minimum
    (or was never measured): not served, so that no option silently loses accuracy."""


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

    def variant_file(
        self, backend: str, precision: str, prefix: str, research: bool = False
    ) -> str:
        """The ``files`` key serving ``backend`` × ``precision``, after the agreement gate.

        The manifest's ``agreement`` section (written by the export's held-out verification)
        maps each variant ``BACKEND:PRECISION`` to its file and its agreement with the fp32
        reference on held-out epochs. A variant is served only when that figure is at least
        ``agreement.minimum``; a manifest without the section serves fp32 only. ``research``
        loads any listed file regardless (evaluation and benchmarks of research exports).
        """
        name = f"{backend}:{precision}"
        table = self.data.get("agreement")
        entry = (table or {}).get("variants", {}).get(name)
        key = entry["file"] if entry else f"{prefix}_{precision}"
        if research or (table is None and precision == "fp32"):
            return key
        minimum = float((table or {}).get("minimum", MIN_AGREEMENT))
        if entry is None or entry.get("agreement") is None:
            why = f"its held-out agreement with fp32 was never measured ({self.path.name})"
        elif entry.get("research"):
            why = (
                f"its file is a research export that stages {entry['agreement']:.1%} of "
                "held-out epochs as fp32"
            )
        elif entry["agreement"] < minimum:
            why = (
                f"it stages only {entry['agreement']:.1%} of held-out epochs as fp32 "
                f"(at least {minimum:.0%} required)"
            )
        else:
            return key
        raise VariantRefused(
            f"--backend {backend} --precision {precision} is not offered: {why}; "
            f"use {self._alternative(name, precision, minimum)}"
        )

    def _alternative(self, refused: str, precision: str, minimum: float) -> str:
        """The (at most two) best served variants of the same precision, the native kernel
        first on a tie (the fastest), else fp32."""
        table = (self.data.get("agreement") or {}).get("variants", {})
        served = {
            n: e["agreement"]
            for n, e in table.items()
            if n != refused
            and n.endswith(f":{precision}")
            and not e.get("research")
            and e.get("agreement") is not None
            and e["agreement"] >= minimum
        }
        if not served:
            return "--precision fp32"
        preference = ("native", "onnxruntime", "litert", "numpy")

        def rank(name: str) -> tuple[float, int]:
            backend = name.split(":")[0]
            tie = preference.index(backend) if backend in preference else len(preference)
            return -round(served[name], 3), tie

        best = sorted(served, key=rank)[:2]
        return " or ".join(
            f"--backend {n.split(':')[0]} --precision {precision} ({served[n]:.1%})" for n in best
        )

    @property
    def classes(self) -> list[str]:
        return list(self.data["classes"])
