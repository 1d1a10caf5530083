"""The search-quality study (does the search pick better students?), as ``studentnas bench study search-quality``.

The study lives in :mod:`studentnas.studies.search_quality`; this script takes the same flags (``--help``):

  OMP_NUM_THREADS=1 python scripts/search_quality.py --quick --out /tmp/sq      # ~3 min smoke run
"""

import sys

from studentnas.studies.search_quality.driver import main

if __name__ == "__main__":
    sys.exit(main())
