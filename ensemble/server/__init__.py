"""What the LangGraph server loads from Ensemble: access control and request checks."""
