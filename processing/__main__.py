from processing.app.cli import main

raise SystemExit(main())
