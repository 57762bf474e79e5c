"""The one exception type for mistakes in the user's input.

train.py and eval.py catch `UserError` and print its message as a single paragraph
(exit code 2) instead of a traceback: the message must name the bad value and say
what is accepted. Anything else that goes wrong is a bug and keeps its traceback.
"""

WORKER_MARK = "Original Traceback"


class UserError(Exception):
    """Bad input from the user (a flag, a list file, an image, a checkpoint)."""

    def __str__(self) -> str:
        # A DataLoader worker's error is raised again in the main process with the worker's
        # whole traceback as its message; the user's message is the text after its last line.
        message = super().__str__()
        if WORKER_MARK in message:
            return message.rsplit("UserError: ", 1)[-1].strip()
        return message
