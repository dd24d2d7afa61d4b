"""Real-face comparisons: the data sets, their seeded reports and the README summary."""
