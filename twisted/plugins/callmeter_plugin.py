"""The twistd plugin: ``twistd -n callmeter`` (Debian: ``twistd3 -n callmeter``).

Kept import-light: Twisted imports every plugin module to build its plugin cache.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from twisted.application.service import IServiceMaker
from twisted.plugin import IPlugin
from zope.interface import implementer

from callmeter.options import WorkerOptions


@implementer(IServiceMaker, IPlugin)
class CallmeterServiceMaker:
    tapname = "callmeter"
    description = "callmeter-worker: SIP/RTP test endpoints controlled by a gateway"
    options = WorkerOptions

    def makeService(self, options: WorkerOptions) -> Any:
        from callmeter.config import ConfigError, load_config
        from callmeter.service import makeService

        try:
            config = load_config(os.environ, options.overrides())
        except ConfigError as error:
            # One line, the variable, the value and what is allowed; a non-zero exit.
            sys.stderr.write(f"callmeter: {error}\n")
            raise SystemExit(2) from None
        return makeService(config)


serviceMaker = CallmeterServiceMaker()
