"""What the output shows in place of a composite while there is nothing to composite.

In: the last picture sent (RGB uint8) and an output buffer of the same shape.
Out: :func:`camera_lost_card` (the camera is gone) and :func:`idle_card` (nobody watches:
the camera is released) draw their card into that buffer and return it.
Pure: no state, any thread.
"""

from __future__ import annotations

import cv2
import numpy as np

LOST_TEXT = "camera lost - reconnecting"
LOST_DIM = 0.4  # the last picture at 40 %: plainly not live, still recognisable
IDLE_TEXT = "vbg idle - camera off until an app reads this one"
IDLE_DIM = 0.25  # darker than the lost card: nothing is wrong, nothing is live


def camera_lost_card(last: np.ndarray, out: np.ndarray) -> np.ndarray:
    """The camera is gone: ``last`` (the last picture sent, RGB uint8) dimmed, with a line of
    white text saying so, drawn into ``out`` (same shape as ``last``, not ``last`` itself);
    returns ``out``."""
    cv2.convertScaleAbs(last, dst=out, alpha=LOST_DIM)
    cv2.putText(out, LOST_TEXT, (20, 40), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (255, 255, 255), 2, cv2.LINE_AA)
    return out


def idle_card(last: np.ndarray | None, out: np.ndarray) -> np.ndarray:
    """Nobody reads the virtual camera: ``last`` (the last picture sent, or None: none yet) at
    a quarter of its brightness, with a small line of text saying so, drawn into ``out``."""
    if last is None:
        out.fill(0)
    else:
        cv2.convertScaleAbs(last, dst=out, alpha=IDLE_DIM)
    cv2.putText(out, IDLE_TEXT, (20, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (200, 200, 200), 1, cv2.LINE_AA)
    return out
