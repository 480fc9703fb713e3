"""``python -m em_restore.cli``: the ``em-restore`` command."""

import sys

from em_restore.cli import main

sys.exit(main())
