"""The `ensemble` command line."""
