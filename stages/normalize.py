"""Stage normalize@<dataset>: every normalization of every draw of one data set (SPEC 3).

A normalization that is impossible (a constant feature) leaves a `.error` file instead of
data; the plan stage reports it only if some sweep asks for that normalization.
"""

from pathlib import Path

import click

from bnmodels.atomic import atomic_write_text
from bnmodels.experiment.config import NORMALIZATIONS
from bnmodels.experiment.data import NormalizationError, load_draws, normalize, save_split
from bnmodels.experiment.layout import data_file, error_file
from bnmodels.shutdown import fast_exit


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
    """Write every normalization of each draw of the generated DATASET under
    PROCESSED/DATASET (SPEC 3)."""
    folder = Path(processed) / dataset
    for stale in [*folder.glob("*.pt"), *folder.glob("*.error")]:  # a draw no longer made
        stale.unlink()
    for draw, split in enumerate(load_draws(raw)):
        name = dataset if draw == 0 else f"{dataset} (draw {draw})"
        for method in NORMALIZATIONS:
            try:
                data = normalize(split, method, name)
                save_split(data, data_file(processed, dataset, method, draw))
            except NormalizationError as e:
                atomic_write_text(error_file(processed, dataset, method, draw), f"{e}\n")


if __name__ == "__main__":
    fast_exit()
    main()
