"""Importers for official checkpoints, into self-describing detector folders."""
