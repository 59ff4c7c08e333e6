from llamacy._cli import main

raise SystemExit(main())
