"""`python -m scaffold`: see scaffold/commands.py."""

import sys

from scaffold.commands import main

sys.exit(main())
