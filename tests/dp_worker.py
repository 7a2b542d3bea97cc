"""One msrun worker of test_train's distributed test: trains, then saves its own weights as rank_<r>.npz.

Usage (msrun runs it once per rank): python -m dp_worker OUTPUT_DIR KEY=VALUE... (rare_tiny --opt overrides)
"""
import sys
from pathlib import Path

import numpy as np

from rare_portable import get_state, load_config
from rare_portable.train.loop import Trainer
from rare_portable.train.settings import read_settings

if __name__ == "__main__":
    output, opts = Path(sys.argv[1]), sys.argv[2:]
    config = load_config("rare_tiny", opts)
    trainer = Trainer(config, read_settings(config, opts))
    result = trainer.run()
    np.savez(output / f"rank_{trainer.cluster.rank}.npz", **get_state(trainer.network))
    sys.exit(0 if result.stop_reason == "completed" else 1)
