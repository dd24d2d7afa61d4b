"""The regime study: where margin losses overtake softmax (grid, report, figures)."""
