"""Reports: bench JSON into one self-contained HTML page with plots; progress bars for long commands."""
