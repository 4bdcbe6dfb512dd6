"""`python -m rewards list | score ...`; see rewards/cli.py."""

import sys

from rewards.cli import main

sys.exit(main())
