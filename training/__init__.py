"""ResUNet-CMB training stage: config → data → model → metrics → ``main.py`` (the CLI).

Importing this package does not import Keras; ``training.config`` can be used before any backend is chosen.
"""
