"""Networks the accounts live on: the driver interface every network implements, and the embedded network."""
