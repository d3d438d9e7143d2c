"""The error every checkpoint check raises."""

from __future__ import annotations


class CheckpointError(ValueError):
    """A checkpoint cannot be used; the message (one line) names the file and the field or key at fault."""
