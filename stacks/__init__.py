"""Stack composition: typed config, one module per stack, and the cross-stack output contract."""
