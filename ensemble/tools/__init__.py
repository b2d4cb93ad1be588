"""Tools agents call: corpus search, a calculator, a sandboxed Python runner, permissions.

Each tool is its own module, imported where it is used: importing `ensemble.tools.sandbox` (as
`ensemble doctor` does) loads no LangChain.
"""
