#!/usr/bin/env python
"""This checkout's C kernels against another checkout's, side by side in one process.

python scripts/ab_native.py ../timm-pushpull-before [--library push_pull_taps] [--groups 3]

Prints a table (timm_pushpull/benchmarks/against_build.py): each of issue 25's layers and models
with either build against its reference, and the ratio of the two.
"""

import sys

from timm_pushpull.benchmarks.against_build import main

if __name__ == "__main__":
    sys.exit(main())
