"""The guide's accuracy evaluation (section 6): determinism, a task set, numeric parity.

    python eval/accuracy_eval.py --model /path/to/weights            # against the bundle's server
    python eval/accuracy_eval.py --quick --parity-dtypes float32     # the CI-sized run
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file: the repo's packages

from verification.accuracy_cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
