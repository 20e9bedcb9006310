"""``python -m kdlab``: the ``kdlab`` command (:func:`kdlab.cli.main`)."""

import sys

from .cli import main

sys.exit(main())
