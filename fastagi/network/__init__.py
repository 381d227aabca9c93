"""Skype network drivers: the narrow interface and the embedded network."""
