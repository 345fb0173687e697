"""Controls and side panels of the window."""
