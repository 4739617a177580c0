"""Offline processing: every frame of a video file, segmented and composited, written to a file."""
