"""Device simulators that speak the real wire protocols (labctl/1 over MQTT)."""
