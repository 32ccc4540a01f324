"""``python -m proxy.cli``: the ``callgate`` command."""

import sys

from . import main

sys.exit(main())
