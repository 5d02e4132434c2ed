import sys

from hieratok.cli import main

sys.exit(main())
