"""Logging set-up: one line per event, and a filter that masks anything shaped like a resident ID number or a
mobile number before it is written, so personal data never reaches a log file in clear."""

from __future__ import annotations

import logging
import re

_ID_LIKE = re.compile(r"(?<!\d)(\d{4})\d{10}(\d{3}[\dXx])(?!\d)")
_PHONE_LIKE = re.compile(r"(?<!\d)(1\d{2})\d{4}(\d{4})(?!\d)")


def scrub(text: str) -> str:
    text = _ID_LIKE.sub(lambda m: m.group(1) + "*" * 10 + m.group(2), text)
    return _PHONE_LIKE.sub(lambda m: m.group(1) + "****" + m.group(2), text)


class MaskingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = scrub(record.getMessage())
        record.args = None
        return True


def configure_logging(service: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler()
    handler.addFilter(MaskingFilter())
    handler.setFormatter(logging.Formatter(f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("aiokafka", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
