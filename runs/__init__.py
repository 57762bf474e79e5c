"""Experiment tools: list and compare run directories (`python -m runs`), recreate a run's
code (`python -m runs.reproduce`). They read the text files runs write; standard library only."""
