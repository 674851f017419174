"""grader: an automated homework grader service for deep-learning courses."""

__version__ = "0.1.0"
