"""edgekit.benchmarks."""
