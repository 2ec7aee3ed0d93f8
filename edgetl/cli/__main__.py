"""`python -m edgetl.cli`: the `edgetl` command."""

import sys

from edgetl.cli.main import main

sys.exit(main())
