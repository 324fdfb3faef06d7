"""Bringing models from other tools into mcdla workload files."""
