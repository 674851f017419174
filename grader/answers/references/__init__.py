"""Reference implementations (torch, sympy) that compute the accepted Q2–Q4 answers from a rubric's spec."""
