"""The package version, in the base layer so any module may name it."""

__version__ = "0.1.0"
