"""Coverage-guided fuzzing of every parser and of the whole scan (see README "Fuzzing").

``surface`` is the one module that imports the classifier; ``targets`` says what each target
feeds and what it must never do; ``seeds`` extracts starting inputs from the captures;
``run`` drives one target under atheris (libFuzzer); ``campaign`` runs them all for a time.
"""
