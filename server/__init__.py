"""hwbkptd: the hwbkpt broker daemon."""
