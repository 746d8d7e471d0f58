"""The twistd plugin: ``twistd -n callmeter-gateway`` (Debian: ``twistd3 -n callmeter-gateway``).

The reference gateway of SPEC.md "Reference gateway". Kept import-light: Twisted imports every
plugin module to build its plugin cache.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import IServiceMaker
from twisted.plugin import IPlugin
from zope.interface import implementer

from callmeter.gateway.options import GatewayOptions


@implementer(IServiceMaker, IPlugin)
class CallmeterGatewayServiceMaker:
    tapname = "callmeter-gateway"
    description = "callmeter reference gateway: worker WebSocket on /ws, JSON API on /api"
    options = GatewayOptions

    def makeService(self, options: GatewayOptions) -> Any:
        from callmeter.gateway.service import make_gateway_service

        return make_gateway_service(options)


serviceMaker = CallmeterGatewayServiceMaker()
