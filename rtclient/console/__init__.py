"""The ``rtclient`` command line, as plain parts testable without a terminal.

- :mod:`.auth`: where a command's token comes from (``--user``, ``--token``,
  ``--token-cmd``) and the connection options shared by ``chat`` and ``ping``;
- :mod:`.render`: events as text lines and as JSON records;
- :mod:`.status`: the toolbar's model (state, countdown, typing, own-echo filter);
- :mod:`.commands`: parsing ``/join``, ``/who``, … from an input line;
- :mod:`.controller`: the interactive chat's logic (lines in, lines and toolbar out);
- :mod:`.chat`: the interactive ``rtclient chat`` on prompt_toolkit;
- :mod:`.pipe`: ``rtclient chat`` when stdin is not a terminal (JSON lines);
- :mod:`.ping`: ``rtclient ping``; :mod:`.token`: ``rtclient token``.
"""
