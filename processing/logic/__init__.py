"""Pure logic: transforms, validation, path layout, manifests. No I/O, no clock, no environment."""
