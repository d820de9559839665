"""Run ``training/main.py`` as a script with the tests' stand-in network registered as ``"tiny_model"``.

For tests that need the training command in a process of its own (signals, data worker processes) but not the full
ResUNet-CMB, whose graph takes about a minute to build on a 2-core CPU:
``python tests/tiny_main.py CONFIG [options]`` with ``"model": "tiny_model"`` in the config.
"""

import runpy
import sys
from pathlib import Path

if __name__ == "__main__":
    from training.runtime import load_keras

    load_keras()  # as training/main.py does, before anything imports Keras: no TensorFlow start-up noise
    from training_helpers import tiny_model

    from training import resunet

    resunet.MODELS["tiny_model"] = tiny_model
    script = Path(__file__).resolve().parent.parent / "training" / "main.py"
    sys.argv = [str(script), *sys.argv[1:]]
    runpy.run_path(str(script), run_name="__main__")
