"""KD against CE only for one student, as ``studentnas bench study kd-vs-ce``.

The study lives in :mod:`studentnas.studies.kd_vs_ce`; this script takes the same flags (``--help``):

  OMP_NUM_THREADS=1 python scripts/kd_vs_ce.py --out runs/kd_vs_ce --from-study runs/search_quality --student ID
"""

import sys

from studentnas.studies.kd_vs_ce.driver import main

if __name__ == "__main__":
    sys.exit(main())
