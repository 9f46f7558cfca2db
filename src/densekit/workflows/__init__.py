"""Workflows: the verbs that orchestrate the library (one module per CLI verb): ``export``,
``lr_find``, ``sweep``, ``compare``, ``bench`` (training speed) and ``bench_infer`` (inference
backends). They import the library (config, data, models, engine, runtime), never the reverse."""
