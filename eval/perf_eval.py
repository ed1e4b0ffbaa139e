"""Performance evaluation of the served model (the guide's sections 5 and 9): vLLM's own benchmarks, the guide's tables.

    python eval/perf_eval.py [--preset guide|quick] [--only throughput,online,latency,sweep] [--model PATH] ...

The logic lives in verification/perf_cli.py; `--help` lists the options.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file from anywhere: find the packages

from verification.perf_cli import main

if __name__ == "__main__":
    sys.exit(main())
