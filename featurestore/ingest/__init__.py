"""Ingest steps as plain functions: download, unpack, verify, split, and the pipeline joining them."""
