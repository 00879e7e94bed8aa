"""Using a trained run: :func:`load_run` rebuilds it from its run directory alone."""

from eastmir.inference.run import LoadedRun, load_run

__all__ = ["LoadedRun", "load_run"]
