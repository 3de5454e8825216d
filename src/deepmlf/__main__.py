from deepmlf.cli import main

main()
