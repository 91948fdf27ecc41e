"""What every export module shares: the formats, the error, the optional packages (onnx, bioimage.io)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from unet.exported import INSTALL_HINT, ExportError, import_onnx

__all__ = [
    "BIOIMAGEIO_WEIGHTS",
    "FORMATS",
    "INSTALL_HINT",
    "ONNX_OPSET",
    "ExportError",
    "import_onnx",
    "require_packages",
]

FORMATS = ("bioimageio", "onnx", "torchscript")
BIOIMAGEIO_WEIGHTS = ("pytorch_state_dict", "torchscript", "onnx")
ONNX_OPSET = 17


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
