"""labctl."""
