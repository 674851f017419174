"""Reading answer sheets and parsing the notations students write answers in."""
