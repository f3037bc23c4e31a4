"""``musictranslate models``: list the registry."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from .common import ModelsOption, app, user_errors


@app.command("models")
def models_command(models: ModelsOption = None) -> None:
    """List the models in the registry and the domains each can translate to."""
    from ..registry import list_models, registry_roots

    with user_errors():
        found = list_models(models)
    console = Console()
    if not found:
        roots = ", ".join(str(r) for r in registry_roots(models))
        console.print(f"no models found (searched {roots})")
        return
    table = Table("model", "domains", "path")
    for entry in found:
        domains = ", ".join(entry["domains"]) if not entry["error"] else f"[red]{entry['error']}[/]"
        table.add_row(entry["name"], domains, entry["path"])
    console.print(table)
