"""`python -m featurestore.cli` is the `featurestore` command."""

from featurestore.cli import main

main()
