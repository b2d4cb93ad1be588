"""Ensemble: multi-agent orchestration on LangGraph."""
