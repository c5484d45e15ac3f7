"""Leak forensics: where each connection was checked out, on which thread, for which task, and why
it never came back.

psycopg_pool keeps no record of who holds a connection and says nothing when one is lost.
:class:`~pooldoctor.core.census.Ledger` records every checkout with the pieces here:

- :mod:`.stacks` captures the checkout's call stack across asgiref's hop from a coroutine to an
  executor thread, and folds Django's, asgiref's and asyncio's frames away from the project's;
- :mod:`.threads` names the kind of thread and notices the moment it ends;
- :mod:`.sites` turns lost and pinned connections into leak sites, grouped and counted.
"""
