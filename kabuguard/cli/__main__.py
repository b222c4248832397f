"""`python -m kabuguard.cli` runs the command line."""

from kabuguard.cli import main

main()
