"""Pure decision algorithms (optimization windows, carbon-aware placement): no I/O, stdlib only."""
