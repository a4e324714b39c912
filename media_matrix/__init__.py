"""media-matrix: science-content distribution for a city science-popularization office."""

__version__ = "0.1.0"
