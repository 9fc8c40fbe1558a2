"""``python3 -m scaledapi_proxy``."""

import sys

from scaledapi_proxy.main import main

sys.exit(main())
