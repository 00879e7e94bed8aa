"""``python -m eastmir.cli``: the ``eastmir`` command."""

import sys

from eastmir.cli import main

sys.exit(main())
