"""Speed benchmark; same as ``timm-pushpull bench``. Example: python scripts/benchmark.py --section layers"""

import sys

from timm_pushpull.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
