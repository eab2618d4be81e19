"""``cobench weights ...``: the weights store (see :mod:`cobench.store.weights` and docs/weights.md)."""

from __future__ import annotations

from pathlib import Path

import click

from cobench.errors import CobenchError


@click.group("weights")
def weights() -> None:
    """Model weights in the content-addressed weights store (--save-models writes them there)."""


@weights.command("import")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--store",
    "store_url",
    metavar="URL",
    default="",
    help="The store to import into: a folder or fsspec URL (file://, s3://, gs://, hf://), recorded in the "
    "rewritten results [default: $COBENCH_WEIGHTS_STORE, else ~/.cache/cobench/weights, not recorded].",
)
def import_(paths: tuple[Path, ...], store_url: str) -> None:
    """Put .safetensors files (or the ones under folders) into the weights store, named by their
    SHA-256, and rewrite the result beside each (<stem>.json) to name its weights by hash and size."""
    from cobench.store.weights import WeightsStore
    from cobench.store.weights_import import import_file, weights_files

    files = weights_files(list(paths))
    if not files:
        raise CobenchError(f"no .safetensors files in {', '.join(map(str, paths))}")
    store = WeightsStore(store_url or None)
    store.check_writable()
    rewritten = 0
    for f in files:
        done = import_file(f, store, store_url or None)
        rewritten += done.rewritten
        click.echo(done.line())
    click.echo(f"{len(files)} weights file(s) in {store.url}; {rewritten} result(s) rewritten to name them by hash")
