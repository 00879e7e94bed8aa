"""Experiments as commands: ``eastmir sweep`` (a grid chosen on validation), ``eastmir experiment
limited-data`` / ``generalisation`` and ``eastmir reproduce`` (the papers' grids). Each run is an ordinary
run directory, so ``eastmir report`` reads them all."""
