"""The claims of params.yaml judged on a sweep's tables: claims as records (`claim`,
`metrics`), tables prepared per sweep (`prepared`), run states (`convergence`), the
statistics (`stats`) and the verdicts (`evaluate`). Imports `experiment` only."""
