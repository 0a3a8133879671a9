import sys

from tools.models.cli import main

sys.exit(main())
