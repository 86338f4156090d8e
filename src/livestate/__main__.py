"""`python -m livestate`: the same as the `livestate` command."""

from ._cli import main

raise SystemExit(main())
