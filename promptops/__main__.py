import sys

from promptops.cli import main

sys.exit(main())
