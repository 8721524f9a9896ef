"""Compliance tools over a guard and its records: the CI gate (`check`), the data-flow
inventory, the evidence report, alert rules and data-subject rights (`dsr`)."""
