from edge_dac.cli import main

raise SystemExit(main())
