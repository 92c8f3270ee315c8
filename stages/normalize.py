"""Stage normalize@<dataset>: every normalization of one data set (SPEC 3).

A normalization that is impossible (a constant feature) leaves a `.error` file instead of
data; the plan stage reports it only if some sweep asks for that normalization.
"""

import click

from bnmodels.config import NORMALIZATIONS
from bnmodels.data import NormalizationError, load_split, normalize, save_split
from bnmodels.io import atomic_write_text
from bnmodels.layout import data_file, error_file


@click.command()
@click.argument("dataset")
@click.option(
    "--raw",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="the data set written by the generate stage",
)
@click.option(
    "--processed", required=True, type=click.Path(file_okay=False), help="processed data root"
)
def main(dataset: str, raw: str, processed: str):
    """Write every normalization of the generated DATASET under PROCESSED/DATASET (SPEC 3)."""
    split = load_split(raw)
    for method in NORMALIZATIONS:
        for stale in data_file(processed, dataset, method), error_file(processed, dataset, method):
            stale.unlink(missing_ok=True)
        try:
            save_split(normalize(split, method, dataset), data_file(processed, dataset, method))
        except NormalizationError as e:
            atomic_write_text(error_file(processed, dataset, method), f"{e}\n")


if __name__ == "__main__":
    main()
