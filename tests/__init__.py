"""The farm's test suite: unit tests, integration tests and their shared support code."""
