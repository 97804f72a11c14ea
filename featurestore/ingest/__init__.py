"""Ingest steps as plain functions: download, unpack, verify, split, and the pipeline joining them;
the checks of a request and of the verified rows, and the ``featurestore datasets`` listing."""
