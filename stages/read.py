"""Stage read@<dataset>: a data set from a CSV or Parquet file, every draw and every
normalization of it (extension, SPEC 2c; dvc.yaml makes the file this stage's dependency).

The file is checked whole before anything is written: a bad file stops here, with every
problem named (file, column, first bad row), and no train stage runs. The class labels'
order (class id i is the i-th sorted label) is written beside the data, in columns.json.
"""

import json
from pathlib import Path

import click

from bnmodels.atomic import atomic_write_text
from bnmodels.errors import StageError, clean_errors
from bnmodels.experiment.config import NORMALIZATIONS, FileSpec
from bnmodels.experiment.data import NormalizationError, normalize, save_split
from bnmodels.experiment.file_params import DataFileError
from bnmodels.experiment.files import file_md5, read_table, split_draw
from bnmodels.experiment.layout import columns_file, data_file, error_file
from bnmodels.experiment.params import load_params
from bnmodels.shutdown import fast_exit


@click.command()
@click.argument("dataset")
@click.option(
    "--params",
    "params_file",
    default="params.yaml",
    show_default=True,
    type=click.Path(exists=True, dir_okay=False),
)
@click.option(
    "--processed", required=True, type=click.Path(file_okay=False), help="processed data root"
)
@clean_errors
def main(dataset: str, params_file: str, processed: str):
    """Read DATASET, defined under `file_datasets:` in params.yaml, and write every
    normalization of each of its draws under PROCESSED/DATASET."""
    spec = load_params(params_file).datasets.get(dataset)
    if not isinstance(spec, FileSpec):
        raise StageError(f"{params_file}: no data set {dataset!r} under file_datasets")
    try:
        table = read_table(spec)
    except DataFileError as e:
        raise StageError(str(e)) from None
    folder = Path(processed) / dataset
    for stale in [*folder.glob("*.pt"), *folder.glob("*.error")]:  # a draw no longer made
        stale.unlink()
    for draw in range(spec.draws):
        split = split_draw(table, spec, draw)
        name = dataset if draw == 0 else f"{dataset} (draw {draw})"
        for method in NORMALIZATIONS:
            try:
                data = normalize(split, method, name, table.features)
                save_split(data, data_file(processed, dataset, method, draw))
            except NormalizationError as e:
                atomic_write_text(error_file(processed, dataset, method, draw), f"{e}\n")
    labels = {
        "file": spec.file,
        "md5": file_md5(spec.path),  # the version read: each run's lineage in MLflow
        "rows": spec.rows,
        "target": spec.target,
        "features": list(table.features),
    }
    if table.classes is not None:
        labels["classes"] = [str(c) if not isinstance(c, int | float) else c for c in table.classes]
        click.echo(f"{dataset}: class ids 0..{len(table.classes) - 1} = {labels['classes']}")
    atomic_write_text(columns_file(processed, dataset), json.dumps(labels, indent=1) + "\n")
    click.echo(f"{dataset}: {spec.rows} rows x {len(table.features)} features, {spec.draws} draws")


if __name__ == "__main__":
    fast_exit()
    main()
