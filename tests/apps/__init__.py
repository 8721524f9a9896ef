"""Example applications for the compliance tests (inventory, check); not a test module."""
