"""CreationMix web UI: `python app.py [--listen] [--port N] [--share] [--auth user:pass] [--data-dir DIR] ...`"""
import sys

from creationmix.ui.launcher import run

if __name__ == "__main__":
    sys.exit(run())
