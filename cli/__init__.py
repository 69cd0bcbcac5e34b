"""The ``scorehook`` command line for ops: status, trace, replay."""
