"""``python -m service serve ...``: the same as the ``tessera`` command."""

import sys

from service.cli import main

sys.exit(main())
