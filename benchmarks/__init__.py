"""edgekit.benchmarks: the ``edgekit bench`` harness (each measurement of a file in its own process,
through the runtime) and its reports. The scripts behind the numbers in the README are in ``tools/``."""
