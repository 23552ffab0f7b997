"""Editing a saved cache's manifest in place, as a user or a damaged disk would."""

import json
import os
from typing import Callable


def rewrite_manifest(save_dir, edit: Callable[[dict], None]) -> dict:
    """Apply ``edit`` to ``<save_dir>/manifest.json`` and write it back through the link
    (into the current generation); returns the edited manifest."""
    path = os.path.join(save_dir, "manifest.json")
    with open(path) as file:
        manifest = json.load(file)
    edit(manifest)
    with open(path, "w") as file:
        json.dump(manifest, file)
    return manifest
