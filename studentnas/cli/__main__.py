"""``python -m studentnas.cli``: the same as the ``studentnas`` command."""

import sys

from studentnas.cli.main import main

sys.exit(main())
