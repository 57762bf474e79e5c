"""Models, one package each, and the registry that picks one by --model_type."""
