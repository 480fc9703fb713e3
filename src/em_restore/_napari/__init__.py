"""napari wiring: reader, writer, sample data and widgets. Thin by design.

Everything here maps files/arrays to layer data tuples and back; the compute
lives in :mod:`em_restore.backend` and the file formats in :mod:`em_restore.io`.
"""
