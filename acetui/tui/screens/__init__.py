"""One screen per file: the steps of a run (checkpoint, dataset, parameters, run, results), history and dialogs."""
