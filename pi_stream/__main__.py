from pi_stream.cli import main

raise SystemExit(main())
