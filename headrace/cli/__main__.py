"""`python -m headrace.cli`: the same command line as the installed `headrace`."""

import sys

from headrace.cli.main import main

sys.exit(main())
