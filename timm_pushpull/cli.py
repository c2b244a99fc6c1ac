"""``python -m timm_pushpull.cli``: the ``timm-pushpull`` command (see :mod:`timm_pushpull_cli`).

The command itself lives in the top-level module ``timm_pushpull_cli`` so that ``timm-pushpull
--help`` does not import this package (and with it torch); this module keeps the package's own
entry point, which ``accelerate launch -m timm_pushpull.cli`` and ``torchrun`` use.
"""

import sys

from timm_pushpull_cli import COMMANDS, build_parser, main

__all__ = ["COMMANDS", "build_parser", "main"]

if __name__ == "__main__":
    sys.exit(main())
