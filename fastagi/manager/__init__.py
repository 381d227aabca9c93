"""The shared account manager: accounts, their state, the event bus."""
