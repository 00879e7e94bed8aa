"""Dataset manifests, the log-mel cache and the Lightning data module."""
