"""edgekit.apps."""
