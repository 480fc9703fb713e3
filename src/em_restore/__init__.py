"""napari-em-restore: restoration of electron-microscopy images.

The package is importable without Qt or napari; heavy modules load on use.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
