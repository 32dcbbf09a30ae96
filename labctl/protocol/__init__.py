"""The ``labctl/1`` wire protocol: topic scheme and payload models (see DESIGN.md)."""
