"""AMI: Skype events into Asterisk's manager interface (UserEvent, Originate)."""

from fastagi.ami.listener import AmiListener, AmiSettings

__all__ = ["AmiListener", "AmiSettings"]
