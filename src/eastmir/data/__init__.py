"""Datasets: manifests, dataset adapters, the store and the features step (no Lightning here)."""
