"""`python -m farm` runs the command line."""

import sys

from farm.cli import main

sys.exit(main())
