"""``python -m agents_persist.cli``: the same as the ``agents-persist`` console script."""

import sys

from . import main

sys.exit(main())
