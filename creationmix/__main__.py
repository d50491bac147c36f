import sys

from .startup_gc import run_entry  # first: before anything heavy is imported

from .cli import main  # noqa: E402

sys.exit(run_entry(main))
