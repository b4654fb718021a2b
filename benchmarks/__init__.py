"""edgekit.benchmarks: the ``edgekit bench`` harness (each measurement in its own process), its
reports, and the benchmark scripts behind the numbers in the README."""
