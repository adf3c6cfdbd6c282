"""The top: HTTP routes to calls and errors to JSON (`routes`), the operator CLI (`cli`), and the
composition root (`compose`), the one place that builds the services and the app from settings.

May import everything below it; nothing in `shared` imports it (the triggers and tools do).
"""
