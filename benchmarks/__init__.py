"""vbg benchmarks: timings with warm-up and medians, the machine recorded, never asserted."""
