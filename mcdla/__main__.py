from mcdla.cli.main import main

raise SystemExit(main())
