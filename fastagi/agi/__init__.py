"""FastAGI: the sans-I/O protocol core and the asyncio server over it."""
