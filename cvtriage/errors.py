"""The one error type a user sees: a single line naming the file and the problem."""


class CvtriageError(Exception):
    """A user's mistake or an unusable input. The CLI prints it as one line and exits non-zero."""

    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(message)
        self.exit_code = exit_code


def first_line(error: BaseException) -> str:
    """An outside library's error as a reason for one line: its first line, or its type's name."""
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else type(error).__name__
