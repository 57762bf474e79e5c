"""torchrun, as scripts/slurm_step.sh starts it: `python -m utils.torchrun <torchrun flags> train.py ...`.

The same launcher (torch.distributed.run, with the same flags), but a training process that
fails ends it with that process's exit code (2 for bad input, 138 for a stop by SIGUSR1)
and one line, instead of torchrun's ChildFailedError traceback and exit code 1: the training
has already said what went wrong, and the Slurm script decides by the exit code.
"""

import sys

from torch.distributed.elastic.multiprocessing.api import SignalException
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.run import parse_args, run


def exit_code(error: ChildFailedError) -> int:
    """The first failed process's exit code; killed by a signal: 128 + its number, as a shell says."""
    _, failure = error.get_first_failure()
    return failure.exitcode if failure.exitcode >= 0 else 128 - failure.exitcode


def main(argv: list[str] | None = None) -> int:
    """Run torchrun's launcher; its exit code is the training's."""
    try:
        run(parse_args(sys.argv[1:] if argv is None else argv))
    except ChildFailedError as error:
        rank, _ = error.get_first_failure()
        code = exit_code(error)
        print(f"torchrun: training process {rank} ended with exit code {code}.", file=sys.stderr)
        return code
    except SignalException as error:  # SIGTERM (scancel, scontrol requeue): the training processes got it too
        print(f"torchrun: stopped by {error.sigval.name}.", file=sys.stderr)
        return 128 + error.sigval
    return 0


if __name__ == "__main__":
    sys.exit(main())
