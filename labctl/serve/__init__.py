"""``labctl serve``: the long-running controller of a rig, its HTTP API and discovery."""
