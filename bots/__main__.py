"""`python -m bots` is the same as the `threadline` command."""

import sys

from bots.cli import main

sys.exit(main())
