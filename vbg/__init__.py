"""vbg: real-time virtual background for video calls and recordings."""

__version__ = "0.1.0"
