"""The small frozen records that pass between stages.

Every record carries the sequence number and capture time of the camera frame
it came from, so a later stage can tell a fresh frame from a repeat and
measure how old a mask is. Images are RGB throughout vbg.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class Frame:
    seq: int  # increases by one per captured frame
    t_capture: float  # clock seconds at capture
    image: np.ndarray  # H x W x 3 uint8, RGB


@dataclass(frozen=True, slots=True)
class Mask:
    seq: int  # seq of the frame the model saw
    t_capture: float  # capture time of that frame
    alpha: np.ndarray  # h x w float32 in [0, 1] at the inference size
    t_ready: float  # clock seconds when inference finished
    infer_ms: float  # how long the model took


@dataclass(frozen=True, slots=True)
class Composite:
    seq: int  # seq of the camera frame shown
    t_capture: float
    image: np.ndarray  # H x W x 3 uint8, RGB: what the sinks are sent
    mask_seq: int  # seq of the frame the mask was computed on (-1: none yet)
    fresh: bool  # the model ran on this very frame
    card: bool = False  # a still the filter shows on its own (camera lost, idle): no camera frame's latency
