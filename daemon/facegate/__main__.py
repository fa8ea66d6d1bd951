from __future__ import annotations

import sys

from facegate.cli import main

sys.exit(main())
