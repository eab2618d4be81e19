from cobench.cli import main

main()
