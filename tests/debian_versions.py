"""Prove that the ``debian`` tox environment really runs on Debian 12's packages.

Prints the versions in use and fails if a dependency came from somewhere other
than /usr/lib/python3/dist-packages (a PyPI copy would hide an incompatibility
with the versions the .deb runs on).
"""

import importlib
import sys

MODULES = [
    "twisted",
    "autobahn",
    "treq",
    "txaio",
    "OpenSSL",
    "rich",
    "av",
    "service_identity",
    "sdnotify",
    "prometheus_client",
    "psutil",
]

bad = []
for name in MODULES:
    module = importlib.import_module(name)
    where = getattr(module, "__file__", "") or ""
    version = getattr(module, "__version__", "?")
    print(f"{name:20} {version!s:12} {where}")
    if not where.startswith("/usr/lib/python3/dist-packages/"):
        bad.append(name)
if bad:
    sys.exit(f"not from Debian's packages: {', '.join(bad)}")
