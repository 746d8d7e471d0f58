"""The reference gateway, ``twistd -n callmeter-gateway`` (SPEC.md "Reference gateway").

The other end of the control plane, so a worker is usable without the hosted platform and every
end-to-end test has a real peer. One port serves the worker WebSocket (``/ws``) and the JSON API
(``/api``).

``plans``    the plan check at submission (``validate_plan``: the worker's own validator).
``store``    runs, metric windows and reports in SQLite, off the reactor thread.
``server``   the gateway core: worker sessions (Autobahn server protocol), worker tracking
             (ONLINE, BUSY, ERROR when stale), dispatch of runs, windows and acks.
``api``      the HTTP JSON API on ``/api``.
``options``  the twistd options and the secret files they name (import-light, for the plugin).
``service``  the twistd glue: the site with ``/ws`` and ``/api``, the listening port.
"""
