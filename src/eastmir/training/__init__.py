"""Training: the Lightning system, the data module and the fit/test entry point."""
