"""Datasets, their transforms and the registry that picks one by --data_type."""
