"""Storage: the SQLite job log, result images, settings and the outputs folder.

All SQL of easel lives in this package; it knows nothing of Discord or torch.
"""

from storage.connection import is_busy, write_while_locked
from storage.db import Database
from storage.files import OutputStore, StoredFile
from storage.retention import ForgetReport, PruneReport
from storage.rows import STATUSES, HistoryPage, ImageRow, JobRow
from storage.settings import GuildSettings, UserPrefs

__all__ = [
    "STATUSES",
    "Database",
    "ForgetReport",
    "GuildSettings",
    "HistoryPage",
    "ImageRow",
    "JobRow",
    "OutputStore",
    "PruneReport",
    "StoredFile",
    "UserPrefs",
    "is_busy",
    "write_while_locked",
]
