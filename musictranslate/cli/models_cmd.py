"""``musictranslate models``: list the registry.

Reads manifests only (``musictranslate.catalog``), never torch, so it answers as fast as ``--help``.
"""

from __future__ import annotations

from .common import JsonOption, ModelsOption, app, print_json, table_console, user_errors


@app.command("models")
def models_command(models: ModelsOption = None, json_output: JsonOption = False) -> None:
    """List the models in the registry and the domains each can translate to."""
    from rich.markup import escape
    from rich.table import Table

    from ..catalog import list_models, registry_roots

    with user_errors():
        found = list_models(models)
    if json_output:
        print_json({"models": found, "searched": [str(r) for r in registry_roots(models)]})
        return
    console = table_console()
    if not found:
        roots = ", ".join(str(r) for r in registry_roots(models))
        console.print(f"no models found (searched {roots})", markup=False, highlight=False)
        return
    table = Table("model", "domains", "path")
    for entry in found:
        domains = ", ".join(entry["domains"]) if not entry["error"] else f"[red]{escape(entry['error'])}[/]"
        table.add_row(escape(entry["name"]), domains, escape(entry["path"]))
    console.print(table)
