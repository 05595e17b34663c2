"""Errors a user can fix: the CLI prints them as one line and exits with code 2."""


class NowcastError(Exception):
    """A problem with the user's input (file, option, model) rather than a bug.

    The message must name the file (when there is one) and the problem in one line.
    """

    def __init__(self, message: str, path=None):
        self.path = None if path is None else str(path)
        super().__init__(f"{self.path}: {message}" if self.path else message)


class MissingDependencyError(NowcastError):
    """An optional dependency (e.g. pysteps) is needed for the requested feature."""


class NowcastWarning(UserWarning):
    """Something was done to the input that the user should know about (printed, not fatal)."""


class NowcastNote(NowcastWarning):
    """Information about a choice nowcast made for the user (printed as a note, not a warning)."""
