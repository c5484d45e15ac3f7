from pooldoctor.cli import main

raise SystemExit(main())
