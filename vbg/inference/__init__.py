"""Segmenters: RGB uint8 frame in, float32 alpha in [0, 1] out."""

from .segmenter import Segmenter, SegmenterConfig, create_segmenter

__all__ = ["Segmenter", "SegmenterConfig", "create_segmenter"]
