import sys

from medlight.cli import main

sys.exit(main())
