"""dev.py's helpers: standard library only, because they run before the project's environment exists."""
