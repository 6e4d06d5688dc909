from mlcls.cli import main

main()
