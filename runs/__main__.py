"""`python -m runs`: the runs table (see runs/listing.py)."""

import sys

from runs.listing import main

sys.exit(main())
