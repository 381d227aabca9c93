"""skype-fastagi: a Skype ⇄ Asterisk gateway (FastAGI actions, AMI events, AudioSocket media)."""

__version__ = "0.1.0"
