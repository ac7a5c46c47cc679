"""``python -m runinference.cli``: the same as the ``runinference`` command."""
import sys

from runinference.cli import main

sys.exit(main())
