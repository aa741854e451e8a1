"""Running a study: planning its runs, one run's life (data, fit, checkpoint, record), racing, the
cost estimate, and the executors that spread runs over processes or a Ray cluster."""
