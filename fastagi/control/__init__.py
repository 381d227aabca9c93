"""The admin control socket and its client (the `show`, `call`, `action` and `network` commands)."""
