"""``python -m minlog``: the ``minlog`` command."""

from minlog.cli.main import main

raise SystemExit(main())
