"""The doors into headrace: the HTTP API and the `headrace` command line."""
