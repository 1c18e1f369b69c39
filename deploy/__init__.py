"""Deployment: the process file, and the development runner of `make run` (a package, so the tests
can read the pools it starts)."""
