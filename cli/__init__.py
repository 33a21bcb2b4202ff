"""The ``captioner`` command line: the thin layer on top that imports every component.

One module per command group; each command imports its component when it runs, so
``captioner serve`` or ``captioner score`` never pays for (or needs) TensorFlow.
"""
