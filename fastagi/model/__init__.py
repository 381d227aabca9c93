"""The domain every other part builds on: calls, profiles, accounts, events, audio frames.

It imports nothing else of the package (`tests/test_layers.py` holds it to that).
"""
