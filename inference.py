"""Ask the model: through the running server (--mode api) or in-process vLLM (--mode offline).

    python inference.py --mode api --prompt "Hello, how are you?"
    python inference.py --mode offline --model /path/to/weights --prompt "Hello, how are you?"
    python inference.py --mode api --interactive
"""

from __future__ import annotations

import sys

from verification.inference_cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
