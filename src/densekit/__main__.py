"""`python -m densekit` is the `densekit` command."""
import sys

from .cli import main

sys.exit(main())
