"""What an experiment is: params.yaml read into typed records (`config`, `params`, and
`file_params` for data sets read from files), the data sets (`data` generated, `files`
read from CSV or Parquet, `layout`) and each sweep's plan of runs (`plan`). Imports no
other part."""
