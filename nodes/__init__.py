"""Node functions: generic building blocks and the agents of each scenario."""
