"""Answer sheets: reading them, the notations answers are written in, and references that compute accepted answers."""
