"""Schedules as code: YAML files of workflows and schedules, reconciled like ``kubectl apply``.

``files`` reads and validates the files (errors name file:line:column), ``plan``
compares what they declare with what the write model holds, ``reconcile`` appends
the changes, and ``watch`` applies a directory whenever a file in it changes.
"""
