"""What a study keeps on disk: study.db (runs, histories, meta), saved model files, atomic writes."""
