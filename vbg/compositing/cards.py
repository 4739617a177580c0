"""What the output shows in place of a composite while there is nothing to composite.

In: the last picture sent (RGB uint8) and an output buffer of the same shape.
Out: :func:`camera_lost_card` draws the card into that buffer and returns it.
Pure: no state, any thread.
"""

from __future__ import annotations

import cv2
import numpy as np

LOST_TEXT = "camera lost - reconnecting"
LOST_DIM = 0.4  # the last picture at 40 %: plainly not live, still recognisable


def camera_lost_card(last: np.ndarray, out: np.ndarray) -> np.ndarray:
    """The camera is gone: ``last`` (the last picture sent, RGB uint8) dimmed, with a line of
    white text saying so, drawn into ``out`` (same shape as ``last``, not ``last`` itself);
    returns ``out``."""
    cv2.convertScaleAbs(last, dst=out, alpha=LOST_DIM)
    cv2.putText(out, LOST_TEXT, (20, 40), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (255, 255, 255), 2, cv2.LINE_AA)
    return out
