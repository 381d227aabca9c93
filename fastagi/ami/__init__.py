"""AMI: the gateway's events into Asterisk's manager interface (UserEvent, Originate)."""
