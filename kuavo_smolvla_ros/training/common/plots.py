"""The figure the training runs draw their ``training.png`` on: two panels side by side, saved as a PNG."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def two_panels(path: Path) -> Iterator[tuple[Any, Any, Any]]:
    """Yield (figure, left axes, right axes) of a 12 x 4.5 inch matplotlib figure (the non-interactive Agg
    backend); when the block ends without an exception the figure is laid out and saved to ``path`` (PNG,
    100 dpi, atomically). The figure is closed either way."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from kuavo_smolvla_ros.atomic import write_png

    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    try:
        yield figure, left, right
        figure.tight_layout()
        write_png(figure, path, dpi=100)
    finally:
        plt.close(figure)
