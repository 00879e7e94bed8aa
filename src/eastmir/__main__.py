"""``python -m eastmir …``: the ``eastmir`` command (also how DDP's launcher restarts it in each process)."""

import sys

from eastmir.cli import main

if __name__ == "__main__":
    sys.exit(main())
