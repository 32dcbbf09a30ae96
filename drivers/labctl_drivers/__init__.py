"""Device drivers shipped with labctl, registered through the ``labctl.drivers`` entry points."""
