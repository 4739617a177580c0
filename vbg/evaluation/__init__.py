"""Matte quality you can measure: metrics, test clips with exact truth, the oracle
segmenter and deterministic simulations of the live and offline mask paths.

``python -m benchmarks.quality`` runs them all and writes the table.
"""

from .clips import MOTIONS, MOVING, Clip, load_person, load_room, render_clip
from .metrics import (BoundaryF, QualityMeter, Scores, boundary_f, boundary_tolerance, edge_band, edge_error, flicker,
                      iou, lag)
from .oracle import OracleSegmenter
from .sequences import find_sequences, load_sequence
from .simulate import (ClipTruth, LiveSettings, OracleSource, SegmenterSource, Timed, delay_frames, score_live,
                       score_offline, simulate_live, simulate_offline)

__all__ = [
    "MOTIONS", "MOVING", "BoundaryF", "Clip", "ClipTruth", "LiveSettings", "OracleSegmenter", "OracleSource",
    "QualityMeter", "Scores", "SegmenterSource", "boundary_f", "boundary_tolerance", "delay_frames", "edge_band",
    "edge_error", "find_sequences", "flicker", "iou", "lag", "load_sequence", "Timed",
    "load_person", "load_room", "render_clip", "score_live", "score_offline", "simulate_live",
    "simulate_offline",
]
