"""The progress of an emulated export: named shapes, pure functions of the elapsed fraction.

Real progress follows no one curve (facts file: plateaus, late starts, coarse
steps), so the emulator offers several shapes, chosen by the ``progress_curve``
setting; each is a table of (elapsed fraction, Progress) steps, Progress 0 before
the first. Kept apart from ``models.py`` (which re-exports ``progress_at``) so
the task state machine and the shape of its progress can be read separately.
``stall_fraction`` serves the ``stall_at_progress`` fault: the elapsed fraction
at which a stalled task freezes.
"""

from __future__ import annotations

import math

_TYPICAL: tuple[tuple[float, int], ...] = (
    (0.12, 3), (0.17, 12), (0.21, 21), (0.30, 29), (0.34, 41), (0.41, 52), (0.45, 67),
    (0.52, 80), (0.58, 85), (0.70, 87), (0.81, 90), (0.90, 94), (0.97, 98),
)  # uneven jumps, then a long tail in the 80s/90s while the image is written to S3

SHAPES: dict[str, tuple[tuple[float, int], ...]] = {
    # The default: the typical timing, with the StatusMessages seen on AWS
    # ("validating" at 0, "updating" around 21, "converting" later).
    "realistic": _TYPICAL,
    # The emulator's shape before named shapes: the same steps, "updating" at 0%.
    "classic": _TYPICAL,
    # Jumps to 98% a tenth of the way in, then stays there to the end.
    "jump": ((0.10, 98),),
    # 0% for 60% of the time, then a straight line to the end.
    "late": tuple((0.6 + 0.4 * p / 100, p) for p in range(1, 100)),
    # Coarse steps of 10%, one each tenth of the time.
    "steps": tuple((p / 100, p) for p in range(10, 100, 10)),
}
DEFAULT_SHAPE = "realistic"

_CLASSIC_VALIDATING_UNTIL, _CLASSIC_UPDATING_UNTIL = 0.08, 0.12
_UPDATING_BELOW = 30  # realistic messages: "updating" from the first step up to here, "converting" after


def progress_at(fraction: float, shape: str = DEFAULT_SHAPE) -> tuple[str | None, str | None]:
    """(StatusMessage, Progress) of an active task after ``fraction`` of its duration.

    At ``fraction >= 1`` the task is completed and carries neither field, hence
    ``(None, None)``.
    """
    if fraction >= 1:
        return None, None
    progress = max((p for start, p in SHAPES[shape] if start <= fraction), default=0)
    if shape == "classic":
        if fraction < _CLASSIC_UPDATING_UNTIL:
            return ("validating" if fraction < _CLASSIC_VALIDATING_UNTIL else "updating"), "0"
        return "converting", str(progress)
    message = "validating" if progress == 0 else "updating" if progress < _UPDATING_BELOW else "converting"
    return message, str(progress)


def stall_fraction(limit: int, shape: str = DEFAULT_SHAPE) -> float:
    """The last elapsed fraction (< 1) at which Progress is still <= ``limit``.

    A task stalled at ``limit`` freezes there: it shows that fraction's message
    and Progress for ever. Past the last step that is just before completion.
    """
    for start, progress in SHAPES[shape]:
        if progress > limit:
            return math.nextafter(start, 0.0)
    return math.nextafter(1.0, 0.0)
