"""``python -m scaleinv.cli ...``: the same as the ``scaleinv`` console script."""
import sys

from scaleinv.cli import main

sys.exit(main())
