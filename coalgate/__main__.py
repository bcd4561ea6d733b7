from coalgate.cli import main

main()
