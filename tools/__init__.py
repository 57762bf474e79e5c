"""Tools a researcher reaches for before and after a run, each one command (docs/tools.md):

  python -m tools.lr_find [train.py flags]             the learning-rate range test
  python -m tools.export <run dir or .pth>             torch.export / TorchScript / ONNX, checked
  python -m tools.average_checkpoints <run dir>        the top-k checkpoints averaged into one

They use train.py, eval.py and the rest; nothing of the template uses them.
"""
