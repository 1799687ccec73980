from ranktune.cli import main

raise SystemExit(main())
