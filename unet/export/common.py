"""What every export module shares: the formats, the error, the optional packages (onnx, bioimage.io)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

FORMATS = ("bioimageio", "onnx", "torchscript")
BIOIMAGEIO_WEIGHTS = ("pytorch_state_dict", "torchscript", "onnx")
ONNX_OPSET = 17
INSTALL_HINT = "pip install -e '.[export]'"


class ExportError(ValueError):
    """An export that cannot be done (bad option, existing output, missing package); names the path."""


def require_packages(format: str, out: Path, weight_formats: Sequence[str]) -> None:
    """Refuse (ExportError naming ``out``) an export whose optional packages are not installed."""
    if format == "onnx" or (format == "bioimageio" and "onnx" in weight_formats):
        import_onnx(out)
    if format == "bioimageio":
        try:
            import bioimageio.core
            import bioimageio.spec  # noqa: F401
        except ImportError as e:
            raise ExportError(
                f"{out}: format=bioimageio needs bioimageio.spec and bioimageio.core ({e}); {INSTALL_HINT}"
            ) from None


def import_onnx(path: Path | None, runtime: bool = False) -> tuple[Any, Any]:
    """``(onnx, onnxruntime or None)``; ExportError naming ``path`` with the install hint when missing."""
    try:
        import onnx

        ort = None
        if runtime:
            import onnxruntime as ort
    except ImportError as e:
        raise ExportError(
            f"{path}: ONNX needs the onnx and onnxruntime packages ({e}); {INSTALL_HINT}"
        ) from None
    return onnx, ort
