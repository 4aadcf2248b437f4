"""The base layer: what every other package needs and nothing above it.

The sample schema and the data errors (`schema`), image decoding (`images`), the official metric functions
(`metrics`) and the bootstrap intervals (`intervals`). Nothing here imports another socialfusion package except
the leaf modules (`errors`, `registry`, `runtime`...), so tasks, data, models and evaluation can all build on it.
"""
