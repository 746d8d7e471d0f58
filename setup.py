"""Packaging for callmeter-worker.

``twisted.plugins`` is listed as a package so that the plugin module ships,
but ``twisted/__init__.py`` and ``twisted/plugins/__init__.py`` are *not*
shipped: they belong to Twisted itself (dpkg would refuse to overwrite
python3-twisted's copy).
"""

import re
from pathlib import Path

from setuptools import Extension, find_packages, setup

HERE = Path(__file__).parent
VERSION = re.search(
    r'^__version__ = "([^"]+)"', (HERE / "callmeter" / "__init__.py").read_text(), re.M
).group(1)  # type: ignore[union-attr]

setup(
    name="callmeter-worker",
    version=VERSION,
    description="SIP/VoIP test worker: real SIP endpoints, RTP media and call-quality metrics",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.11",
    packages=[*find_packages(include=["callmeter", "callmeter.*"]), "twisted.plugins"],
    package_data={"callmeter": ["py.typed", "rtp/_fastpath.pyi"]},
    # The per-packet work of the media plane (callmeter/rtp/_fastpath.c): C, Linux (epoll).
    ext_modules=[
        Extension(
            "callmeter.rtp._fastpath",
            ["callmeter/rtp/_fastpath.c"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
        )
    ],
    install_requires=[
        "twisted>=22.4",
        "autobahn>=22.7",
        "service-identity",
        "pyopenssl",
        "cryptography",
        "treq>=22.2",
        "txaio",
        "sdnotify>=0.3.1",
        "prometheus-client",
        "psutil",
        "rich",
    ],
    extras_require={
        # G.722, Opus, VP8, H.264 and media files (PyAV / FFmpeg); G.711 needs nothing.
        "media": ["av>=10"],
    },
    entry_points={"console_scripts": ["callmeter = callmeter.cli:main"]},
    classifiers=[
        "Framework :: Twisted",
        "Topic :: Communications :: Telephony",
        "Programming Language :: Python :: 3",
    ],
)
