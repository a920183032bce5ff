"""Kernels in C, compiled when the package is installed (``pip install .`` needs a C compiler:
gcc or clang; flags in pyproject.toml). Each is loaded through :func:`kernel`, which turns a
missing build into one clear error instead of an ImportError deep in a runner."""

from __future__ import annotations

import importlib
from types import ModuleType

from edge.models.manifest import ModelIntegrityError


def kernel(name: str) -> ModuleType:
    """The compiled module ``edge.native._<name>`` (e.g. ``ulw_sleepnet``)."""
    try:
        return importlib.import_module(f"edge.native._{name}")
    except ImportError as exc:
        raise ModelIntegrityError(
            f"the native backend's kernel edge.native._{name} is not built ({exc}); it is "
            "compiled by `pip install .` (or `pip install -e .`) with gcc or clang on PATH; "
            "reinstall with a compiler, or use --backend onnxruntime"
        ) from None
