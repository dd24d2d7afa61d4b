"""Results I/O and reporting: cell files, the one CSV/Markdown table writer, statistics, plots."""
