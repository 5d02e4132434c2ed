"""`hieratok demo`: the whole system end to end on a CPU, single-scale against HieraTok."""
