"""`python -m densekit` is the `densekit` command."""
import sys

from .cli import console_main

sys.exit(console_main())
