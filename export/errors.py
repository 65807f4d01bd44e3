"""The two ways an export fails: bad input, or a file that does not match."""


class ExportError(Exception):
    """A user's input cannot be exported (bad path, format, options)."""


class VerificationError(Exception):
    """A written file ran, but its outputs or op list broke a threshold."""
