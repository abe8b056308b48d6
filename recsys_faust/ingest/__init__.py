"""The write path: one micro-batch of input records -> table state, as a pipeline of steps.

``processor.UserEventProcessor`` walks a batch down the steps, each a module of plain functions
(or a small class with one job) that takes the batch's data and returns what the next needs:

1. ``accept``: validate each record and sort it: accepted events by user, served answers,
   refused (dead letters), misplaced (re-routed), not owned (left to the partition's owner);
2. ``event_ids``: the de-dup lookup (each partition's epoch, the ids already applied);
3. ``fold_profiles``: each user's answers and events into their profile (one read, one write);
4. ``fold_items``: popularity entries, transition histories and transition entries;
5. ``rank``: the touched users' scoring handed to the scoring process, then their ready lists;
6. ``store``: every table stored in one step, the changelog phases, the batch's metrics.

``ahead.AheadOfStore`` lets batch N+1 fold from batch N's values before N is stored, and
``context.IngestContext`` carries the tables and collaborators the steps are given.
"""

from .ahead import AheadOfStore
from .context import IngestContext, IngestTables
from .processor import UserEventProcessor

__all__ = ["AheadOfStore", "IngestContext", "IngestTables", "UserEventProcessor"]
