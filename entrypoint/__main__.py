"""`python -m entrypoint`: see entrypoint.cli."""

import sys

from entrypoint.cli import main

sys.exit(main())
