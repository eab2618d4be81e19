"""A board in every format it is published in, from the typed board (:mod:`cobench.leaderboard.board`):

* :mod:`.text`: the words, written once: labels, numbers, cells, notes, protocol, methods, captions;
* :mod:`.markdown` and :mod:`.html`: the pages (``<name>.md``, ``<name>.html``), the same words in
  their markup; :mod:`.index`: the site's index page;
* :mod:`.tables`: the data (``<name>.csv``, ``<name>.json``);
* :mod:`.plots`: the figures (PNG);
* :mod:`.prose`: short tables for prose, read back from a rendered JSON (``leaderboard table``,
  ``leaderboard readme``).

Nothing is imported here: the figures need matplotlib, the rest does not.
"""
