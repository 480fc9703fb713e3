"""Headless compute: numpy / scipy / scikit-image / dask / torch only.

Nothing in this package may import Qt, napari or magicgui (a test enforces it).
"""
