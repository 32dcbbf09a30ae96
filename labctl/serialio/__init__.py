"""Serial transports: ports opened without blocking the event loop, drivers' frames turned into
readings, presence kept in the device directory, unplugs survived by reopening with backoff."""
