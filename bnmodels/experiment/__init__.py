"""What an experiment is: params.yaml read into typed records (`config`, `params`), the
data sets (`data`, `layout`) and each sweep's plan of runs (`plan`). Imports no other part."""
