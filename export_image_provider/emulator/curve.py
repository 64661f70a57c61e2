"""The progress curve of an emulated export: pure functions of the elapsed fraction.

Kept apart from ``models.py`` (which re-exports ``progress_at``) so the task
state machine and the shape of its progress can be read separately.
``stall_fraction`` serves the ``stall_at_progress`` fault: the elapsed fraction
at which a stalled task freezes.
"""

from __future__ import annotations

import math

_VALIDATING_UNTIL, _UPDATING_UNTIL = 0.08, 0.12
_CONVERTING_STEPS: tuple[tuple[float, int], ...] = (
    (0.12, 3), (0.17, 12), (0.21, 21), (0.30, 29), (0.34, 41), (0.41, 52), (0.45, 67),
    (0.52, 80), (0.58, 85), (0.70, 87), (0.81, 90), (0.90, 94), (0.97, 98),
)  # (elapsed fraction, Progress): uneven jumps, then a long tail in the 80s/90s


def progress_at(fraction: float) -> tuple[str | None, str | None]:
    """(StatusMessage, Progress) of an active task after ``fraction`` of its duration.

    Shaped like real exports: a validating phase at "0", uneven jumps while the
    snapshot is converted, then a long tail in the 80s/90s while the image is
    written to S3. At ``fraction >= 1`` the task is completed and carries
    neither field, hence ``(None, None)``.
    """
    if fraction >= 1:
        return None, None
    if fraction < _VALIDATING_UNTIL:
        return "validating", "0"
    if fraction < _UPDATING_UNTIL:
        return "updating", "0"
    progress = max(p for start, p in _CONVERTING_STEPS if start <= fraction)
    return "converting", str(progress)


def stall_fraction(limit: int) -> float:
    """The last elapsed fraction (< 1) at which Progress is still <= ``limit``.

    A task stalled at ``limit`` freezes there: it shows that fraction's message
    and Progress for ever. Past the last step (limit >= 98) that is just before
    completion.
    """
    for start, progress in _CONVERTING_STEPS:
        if progress > limit:
            return math.nextafter(start, 0.0)
    return math.nextafter(1.0, 0.0)
