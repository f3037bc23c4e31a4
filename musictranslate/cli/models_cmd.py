"""``musictranslate models``: list the registry."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from .common import ModelsOption, app, stderr, user_errors


@app.command("models")
def models_command(models: ModelsOption = None) -> None:
    """List the models in the registry and the domains each can translate to."""
    from ..registry import list_models, registry_roots

    with user_errors():
        found = list_models(models)
    for entry in found:
        if entry["error"]:
            stderr.print(f"warning: skipped {entry['error']}", markup=False, highlight=False, soft_wrap=True)
    found = [entry for entry in found if not entry["error"]]
    console = Console()
    if not found:
        roots = ", ".join(str(r) for r in registry_roots(models))
        console.print(f"no models found (searched {roots})")
        return
    table = Table("model", "domains", "path")
    for entry in found:
        table.add_row(entry["name"], ", ".join(entry["domains"]), entry["path"])
    console.print(table)
