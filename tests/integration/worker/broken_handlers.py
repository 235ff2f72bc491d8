"""A handler module whose import fails (the Python target reports it, never raises)."""

raise RuntimeError("settings missing")
