"""Scenario graphs: one module per scenario, each exposing `build_<name>()` and `graph`."""
