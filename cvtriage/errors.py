"""The one error type a user sees: a single line naming the file and the problem."""


class CvtriageError(Exception):
    """A user's mistake or an unusable input. The CLI prints it as one line and exits non-zero."""

    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(message)
        self.exit_code = exit_code
