"""`python -m shared`: the operator CLI (shared/api/cli.py)."""

import sys

from shared.api.cli import main

sys.exit(main())
