"""`python tests/fake_app.py [app.py flags]`: the web UI over the torch-free FakeService (UI development; the
browser test with CREATIONMIX_UI_TEST_FAKE=1). The real app never imports tests/."""
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from creationmix.ui.launcher import main  # noqa: E402  (main, not run: the fake keeps GC as a library user)
from tests.fake_service import FakeService  # noqa: E402


def fake_service(args):
    return FakeService(args.data_dir, step_delay=float(os.environ.get("CREATIONMIX_FAKE_STEP_DELAY", "0.05")),
                       banner="Fake service: images are flat colours (tests/fake_app.py).")


if __name__ == "__main__":
    sys.exit(main(service_factory=fake_service))
