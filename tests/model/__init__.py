"""One model of the world, shared by every runner: programs, devices, worlds, the oracle.

* :mod:`.program`: seeded programs (JSON step lists) over every public operation
  of a device and every event of the world outside it.
* :mod:`.device`: the :class:`~.device.Device` interface a runner drives (plain
  dicts in and out, so a Chromium page can stand behind it) and
  :class:`~.device.PyDevice`, a CPython replica on ``pysync.testing.MemoryBrowser``
  with its network faults in a :class:`~.device.FaultyRemote` (single calls, and
  the batches of calls the push sends through ``call_many``: to ``MemoryDynamo``,
  or to the proxy's ``Pysync_20261205.Batch`` over HTTP).
* :mod:`.memory` and :mod:`.stack`: the worlds: one ``MemoryDynamo``, or DynamoDB
  Local + the proxy over HTTP + the stream consumer + boto3.
* :mod:`.runner`: runs a program in a world, ends the faults, syncs every device
  to quiescence, and gives the evidence to :mod:`.oracle`; minimizes failures.

What a program does
-------------------
Two or three devices of one user (own storage, own clock, own network), each
with a conflict strategy among ``lww``, ``server``, ``client`` and a callback,
and its own ``Sync`` push options, drawn from the seed and recorded in the
program: ``push_batch`` 1 (every call its own request), 2 or 50 (the calls a
push starts together travel in batches of that many per request),
``pack_size`` 1 or, for one device in five, 3 (independent changes packed into
``TransactWriteItems``), ``push_concurrency`` 1 or 8 (requests out at once); a
program recorded without them runs with the library's defaults. Collections
``docs`` (ids a, b, c, n0, n1; fields x, y, z) and ``counters`` (k0, k1; ``n``
changed only by increments, ``tag`` by patches). Device steps: put, add (also
without an id), patch, increment, delete, ``transaction()`` of 2 to 4 of them
(also over documents with pending edits, also writing one document twice),
sync / push / pull, a push during whose first write (in flight) edits are made,
retry and discard of a rejected change, offline and online, reload (close,
reopen on the same storage), crash (cancel a push with a write in flight that
lands, never lands, or lands at the next step; reopen), schema upgrade (reopen
with version + 1: a new index and a migration step over documents and queued
changes), old layout (the device's database rewritten as the pysync before outbox
layout 2 stored it -- an entry per ``_outbox`` row, the ``by_record``/``by_state``
indexes, IndexedDB version = app version, no layout row: :mod:`.layout` -- then
opened with today's, which upgrades it; a third of them with an app upgrade at
once, two in five after a crash as above), clock jumps; and the device's network
faults: lost replies (the write lands; 1, or 8 in a row so the push gives up;
network error or 500), 5xx and throttling bursts before anything lands,
permanent refusals of the next write,
and the one fault only a batch has: its whole reply lost after all its calls
were applied (the next 1 or 4 batches of two or more calls, a write among
them: every call gets a network error). In a batch each call meets the faults
as it would alone, in the batch's order (a refused call is not sent, a lost
reply is that call's alone, the in-flight edits are made before the batch
leaves); a crash's write hangs inside its batch: the calls before it are sent,
the hanging one lands or not as drawn, the ones after it are never sent, the
batch never answers, and the crash cuts the batch (the batcher's task, which a
cancelled push does not cancel) with the tab. World steps: writes straight to
DynamoDB by a writer that is not pysync (puts, updates, increments, each
following the bypass contract -- a new unique ``_m`` and ``ADD _v 1`` -- or
leaving ``_v``/``_m`` alone; hard deletes; TTL-style deletes of tombstones;
re-creates of deleted ids, also a delete and re-create at once so versions start
again), the changelog lagging and catching up, changelog entries expiring,
transaction tokens forgotten (memory), proxy restarts and consumer restarts or
crashes (stack). Every value a write sets is unique in the program, so where a
value is, is exact.

The oracle (checked once faults stop and every device has synced to quiescence)
------------------------------------------------------------------------------
The end: every device's faults are cleared and writes held by a crash arrive;
all are online; their clocks move 15 minutes on; the changelog catches up; then
rounds of ``sync()`` over every device until a whole round pushes nothing,
meets no conflict, applies nothing and does no base sync (P0 if 12 rounds do
not get there). The outboxes are read (P2); then every rejected change is
retried or discarded (the program says which) and the devices sync to
quiescence again. The evidence: each device's documents, outbox and
``_conflicts``; the server's items; the whole changelog (read before any entry
is made to expire, and at the end); the runner's log of every local edit (the
document before and after, the outbox entry it went into, by number, and every
mutation id that entry was sent under) and of every outside write (the item
before and after). An edit is *acknowledged* when its outbox entry left the
outbox other than by a discard of it or by a delete cancelling a create that was
never pushed.

*History.* The changelog is the history of each record: its entries in seq
order, each with the state before (the previous entry's image, or none) and
after. An entry is attributed: a delete (``op`` delete: only outside writers
and TTL delete items), an outside write (its image is the one that writer left,
matched in order), a consumer stamp (``_m`` ``stamp:*``), a settle probe
(``_m`` ``probe:*``), else a pysync write whose mutation id is its ``_m``.
Documents exclude system fields (``pk``, ``sk``, anything starting with ``_``);
a tombstone (``_del``) shows no document.

P0 quiescence and liveness: the end is reached, and no single device operation
   sends more than 3,000 requests (a push that never returns is a failure).
P1 convergence: every device's documents equal the server's, in both collections.
P2 outbox: at the first quiescence each outbox holds only rejected changes, each
   with an ``error`` holding a ``code`` and a ``message``, and changes of the same
   record waiting behind such a rejected change; after the rejected ones are
   retried or discarded, every outbox is empty.
P3 landed: every acknowledged edit's change reached the server: one of the
   mutation ids its entry was sent under is a pysync write in its record's
   history, unless the device recorded a conflict on that record whose result is
   its remote side (nothing was left to write).
P4 applied once: in a record's history a ``_m`` appears in two entries only when
   the later ones are outside writes that left ``_m`` alone (probes excepted); a
   mutation id writes one record only; and an outbox entry lands at most once,
   whatever ids it was sent under.
P5 values: every value set by an acknowledged edit or an outside write (a field
   and its value) is in the final document, or was *superseded*: a write (an
   acknowledged local edit, an outside write, or a conflict's result) was made on
   a state holding it and changed it; or it is the local or remote side of a
   recorded conflict of that record; or (the documented window) it was written
   by an outside writer that left ``_m`` alone and the record's history goes on
   with a pysync write before any stamp (other writes that left ``_m`` alone may
   come between). A deletion (acknowledged local
   delete, outside or TTL delete) holds when the record is absent at the end, or
   the history creates it again after the deletion's entry, or a later
   acknowledged local edit re-created it on a device where it was gone, or a
   recorded conflict of the record has a deleted side.
P6 conflicts: each recorded conflict's remote side is a document the server had
   (a state of the record's history, or none), its local side a document the
   device had (seen after any step or edit, or a result of its own conflicts),
   its base one of either.
P7 increments: every write to a live counter that leaves it live moved ``n`` by
   exactly the increments it carries: an outside increment its amount, other
   outside updates and stamps 0, a pysync write the sum of the increments of the
   local edits whose entry was sent under that id (a merged change re-applies its
   own deltas); outside puts set ``n`` anew, and a write that re-creates a deleted
   counter starts a new incarnation. So a counter's final ``n`` is its value when
   its current incarnation began plus every increment applied to it since, each
   once (P4): increments made on a document deleted for good and created again
   add to the new one.
P8 stamped (worlds whose consumer stamps): each final item's (``_v``, ``_m``)
   names one state: no earlier entry of the record had that pair with another
   document.
U  upgrade (each old layout step, checked at once): the outbox opened by today's
   pysync holds every entry the older layout held, unchanged (after an app upgrade:
   its number, mutation id, record, operation, group, state, follows and error),
   the documents are unchanged, the status counts its pending and rejected entries,
   and each record with entries has the sync state they give it.
L  local: an edit leaves the document as the API says (put replaces, patch sets,
   increment adds); a transaction's documents are its writes applied in order;
   a failed transaction writes nothing.
E  no operation raises anything but the errors the API documents.
H  the history is whole: every changelog seq was seen, every outside write is in it.
"""
