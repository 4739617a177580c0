"""Model specs, weights, export and resolution of ``--model`` to a runnable file."""
