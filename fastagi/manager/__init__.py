"""The shared account manager: the accounts, their state (SQLite), and the three parts that change it."""
