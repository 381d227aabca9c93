"""The admin control socket and its client (the `show`, `call` and `action` commands)."""

from .server import ControlServer, ControlSocketInUse, start_control

__all__ = ["ControlServer", "ControlSocketInUse", "start_control"]
