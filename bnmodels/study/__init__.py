"""The claims of params.yaml judged on a sweep's tables. Claims as records (`claim`,
`metrics`, `load`); tables prepared per sweep (`prepared`); run states (`convergence`);
the statistics (`stats`, `exact`); each claim's evidence (`evaluate`), its verdict
(`verdicts`), its per-cell effects (`cells`) and how the verdict moves with its choices
(`sensitivity`); when each claim was fixed (`registry`); the verdict path on worlds with
no effect (`calibration`). Imports `experiment` only."""
