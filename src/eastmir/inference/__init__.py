"""Using a trained run: :func:`load_run` rebuilds it from its run directory alone;
:func:`load_student` makes it ready to predict from audio."""

from eastmir.inference.predict import Prediction, TrainedStudent, load_student
from eastmir.inference.run import LoadedRun, load_run

__all__ = ["LoadedRun", "Prediction", "TrainedStudent", "load_run", "load_student"]
