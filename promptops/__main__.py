from promptops.cli import main

main()
