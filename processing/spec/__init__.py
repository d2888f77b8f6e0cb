"""What the pipeline promises: schemas, rules, settings and errors. No I/O here."""
