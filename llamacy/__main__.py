from llamacy.cli import main

raise SystemExit(main())
