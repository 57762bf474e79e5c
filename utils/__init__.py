"""Small helpers shared by train.py and eval.py: run directories, logging, checkpoints, pictures."""
