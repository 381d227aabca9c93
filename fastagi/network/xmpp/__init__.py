"""A live network on XMPP: accounts as ordinary clients of a standard server, with slixmpp."""
