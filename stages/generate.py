"""Stage generate@<dataset>: make one data set from its params (SPEC 2)."""

import click

from bnmodels.data import generate, save_split
from bnmodels.errors import clean_errors
from bnmodels.params import load_params


@click.command()
@click.argument("dataset")
@click.option("--params", "params_file", default="params.yaml", show_default=True)
@click.option("--out", required=True, help="file to write (torch format, exact)")
@clean_errors
def main(dataset: str, params_file: str, out: str):
    params = load_params(params_file)
    save_split(generate(params.datasets[dataset]), out)


if __name__ == "__main__":
    main()
