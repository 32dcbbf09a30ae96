"""The department dashboard: read-only pages served by ``labctl serve``, updated live over
server-sent events, with their own sign-in (``dashboard.users`` in ``labctl.yaml``)."""
