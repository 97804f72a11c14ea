"""`python -m featurestore` is the `featurestore` command."""

from featurestore.cli import main

main()
