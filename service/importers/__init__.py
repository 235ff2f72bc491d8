"""Ways into cronstream from other schedulers: read their job stores, write cronstream's
workflows and schedules (as a file for ``apply``, or applied at once)."""
