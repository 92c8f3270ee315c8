"""Stage generate@<dataset>: make one data set, every draw of it, from its params (SPEC 2)."""

import click

from bnmodels.errors import StageError, clean_errors
from bnmodels.experiment.data import generate, save_draws
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
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="file to write (exact)")
@clean_errors
def main(dataset: str, params_file: str, out: str):
    """Generate DATASET, a data set defined under `datasets:` in params.yaml (SPEC 2)."""
    datasets = load_params(params_file).datasets
    if dataset not in datasets:
        defined = ", ".join(sorted(datasets))
        raise StageError(f"{params_file}: no data set {dataset!r} under datasets ({defined})")
    spec = datasets[dataset]
    save_draws([generate(spec, draw) for draw in range(spec.draws)], out)


if __name__ == "__main__":
    fast_exit()
    main()
