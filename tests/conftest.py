"""Suite-wide settings.

The LiteRT.js check starts a headless Chromium per TFLite verification (seconds each). The
suite runs it where it is the subject — tests/engine/test_litertjs.py, the service's tiny job,
and the tests that ask for it with `litertjs=True` — and turns the default off elsewhere
(`JAXPORT_LITERTJS=0`; set JAXPORT_LITERTJS=1 to run it in every conversion of the suite).
"""

import os

os.environ.setdefault("JAXPORT_LITERTJS", "0")
