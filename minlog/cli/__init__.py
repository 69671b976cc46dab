"""The ``minlog`` command line: `minlog.cli.main` parses and dispatches."""
