"""finops-functions: FinOps pipeline stages as functions-framework functions.

Nothing happens at import time: every client, engine and app is built on first use.
"""

__all__: list[str] = []
