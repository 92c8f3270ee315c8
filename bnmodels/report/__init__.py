"""reports/ as bytes: Markdown, figures, tables and DVC's metrics and plots, built from the
judged claims (`build`). Imports `experiment` and `study`."""
