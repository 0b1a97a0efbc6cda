"""Names in the target's own binaries (issue 13): ELF and DWARF over /proc/PID/maps.

Outside ``core`` because it reads files; the core sees it through the ``Names`` port
(``hwbkptd.core.names``), injected by the daemon. ``resolver.Resolver`` is the entry.
"""
