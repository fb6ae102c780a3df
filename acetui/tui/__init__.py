"""The full-screen Textual app: a thin client of the engine packages (``make_app`` in ``app.py``)."""
