"""The one error type users see: a clear one-line message and a non-zero exit, never a traceback."""


class KpError(Exception):
    """A user-facing failure. `str(err)` is the one line printed; `exit_code` is the process status."""

    def __init__(self, message: str, exit_code: int = 2, detail: str | None = None):
        super().__init__(message)
        self.exit_code = exit_code
        self.detail = detail  # longer text (a verifier log, say) shown with --verbose or in a file


class CapabilityError(KpError):
    """The host does not allow something (not root, no BTF, program type missing)."""

    def __init__(self, message: str, detail: str | None = None):
        super().__init__(message, exit_code=3, detail=detail)
