"""The daemon: its command line (main), the machine it drives (machines, native_hooks), logging.

Nothing is imported here: ``hwbkptd.api`` imports ``machines`` while ``main`` imports the api.
"""
