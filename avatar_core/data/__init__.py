"""Training data: the text corpus the teacher speaks, and (later) the teacher dataset itself."""
