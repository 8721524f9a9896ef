"""A sink that writes each provenance record to stdlib `logging`.

For shipping events wherever the application's logs already go (a JSON log formatter,
journald, a log agent feeding a SIEM). The message is the record's canonical line, so
a collector that keeps the message verbatim can still verify the chain; structured
formatters find the document in ``record.aiguard_event``. Best effort by default:
logging handlers do not report whether anything was written.
"""

from __future__ import annotations

import logging

from .chain import EventRecord

__all__ = ["LoggingSink"]


class LoggingSink:
    """Logs one record per provenance event on ``logger`` at ``level``."""

    def __init__(
        self,
        logger: str | logging.Logger = "aiguard.provenance",
        level: int = logging.INFO,
        *,
        required: bool = False,
    ) -> None:
        self.logger = logger if isinstance(logger, logging.Logger) else logging.getLogger(logger)
        self.level = level
        self.required = required

    def emit(self, record: EventRecord) -> None:
        if not self.logger.isEnabledFor(self.level):
            return
        # The line is passed as the message with no arguments, so a "%" inside it is
        # never interpreted as a format directive.
        self.logger.log(
            self.level, record.line.decode("utf-8"), extra={"aiguard_event": record.document}
        )

    def flush(self) -> None:
        logger: logging.Logger | None = self.logger
        while logger is not None:
            for handler in logger.handlers:
                handler.flush()
            logger = logger.parent if logger.propagate else None

    def close(self) -> None:
        # The handlers belong to the application; flush them, never close them.
        self.flush()

    def __repr__(self) -> str:
        return f"LoggingSink({self.logger.name!r}, level={logging.getLevelName(self.level)})"
