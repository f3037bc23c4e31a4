"""``python -m musictranslate`` runs the CLI."""

from .cli import main

main()
