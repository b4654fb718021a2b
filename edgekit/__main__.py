"""``python -m edgekit`` (and ``torchrun -m edgekit``) runs the CLI."""

import sys

from edgekit.cli import main

sys.exit(main())
