"""Rubrics as data (rubrics/<assignment>.yaml), the checker registry, and the engine that scores a sheet."""
