"""`python -m cvtriage.cli`: the same as the `cvtriage` command."""

import sys

from cvtriage.cli import main

sys.exit(main())
