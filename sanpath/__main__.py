from sanpath.cli.main import main

main()
