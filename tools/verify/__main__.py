"""``python -m tools.verify`` (``./dev verify``)."""

import sys

from tools.verify.run import main

sys.exit(main())
