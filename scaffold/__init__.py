"""Start a project from this template, or add a model or a data set to it, in one command:
`python -m scaffold project|model|dataset` (see scaffold/commands.py). Standard library only."""
