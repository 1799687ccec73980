"""The ranktune command line: ``python -m ranktune`` or the ``ranktune`` script."""
