"""`python -m cnnbench.cli ...`: the `cnnbench` command."""

import sys

from . import main

sys.exit(main())
