"""Thin Lambda handlers: parse the event, call a plain function, shape the result."""
