"""Plain domain records shared by the grading core, the services and the API (no framework imports)."""
