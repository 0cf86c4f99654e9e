"""`python -m litejobs`: the same as the `litejobs` command."""

import sys

from litejobs.cli import main

sys.exit(main())
