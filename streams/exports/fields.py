"""Reading one row of a CRM export: headers in any case, tolerant dates, amounts and flags.

Pure Python. A value the mapping cannot use raises `Unmappable` naming the column, which the
importer reports with the row's line number.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from decimal import Decimal, InvalidOperation
from functools import cache

from streams.events import EPOCH

DATE_EXAMPLES = "e.g. 2024-03-15 14:30, 03/15/2024 02:30 PM or 2024-03-15T14:30:00Z"
DATE = re.compile(
    r"(?:(?P<y>\d{4})[-/](?P<m>\d{1,2})[-/](?P<d>\d{1,2})"  # 2024-03-15, 2024/03/15
    r"|(?P<us_m>\d{1,2})/(?P<us_d>\d{1,2})/(?P<us_y>\d{4}))"  # 03/15/2024 (US order)
    r"(?:[T ,]+(?P<hh>\d{1,2}):(?P<mm>\d{2})(?::(?P<ss>\d{2})(?:\.(?P<frac>\d{1,9}))?)?"
    r"\s*(?P<ampm>[AaPp]\.?[Mm]\.?)?)?"
    r"\s*(?P<tz>Z|UTC|GMT|[+-]\d{2}:?\d{2})?",
)
UTC_SUFFIXES = ("Z", "UTC", "GMT")
TRUE = frozenset({"1", "true", "yes", "y", "t", "x", "checked"})
FALSE = frozenset({"0", "false", "no", "n", "f", "unchecked"})
SYMBOLS = {"€": "EUR", "£": "GBP"}  # `$` and `¥` name several currencies: not inferred
CODE = re.compile(r"^([A-Za-z]{3})\s*|\s*([A-Za-z]{3})$")
THOUSANDS = re.compile(r"\d{1,3}(,\d{3})+")
MAX_TEXT = 256


class Unmappable(ValueError):
    """A row the mapping cannot turn into events; the message names the column."""


@cache
def header_key(name: str) -> str:
    """A column name compared case- and spacing-insensitively (a UTF-8 BOM dropped)."""
    return " ".join(name.replace("\ufeff", "").lower().split())


class Row:
    """One export row, read by column name (any case), with naive times in `zone`."""

    def __init__(self, values: Mapping[str, str], zone: tzinfo) -> None:
        self.values = {header_key(name): value for name, value in values.items()}
        self.zone = zone

    def has(self, *names: str) -> bool:
        """True when the export has one of these columns (filled or not)."""
        return any(header_key(name) in self.values for name in names)

    def text(self, *names: str) -> str | None:
        """The first non-empty value among these columns, trimmed; None when all are empty."""
        for name in names:
            value = (self.values.get(header_key(name)) or "").strip()
            if value:
                return value
        return None

    def required(self, *names: str, why: str = "is required") -> str:
        """Like `text`, but a missing value is `Unmappable`."""
        value = self.text(*names)
        if value is None:
            raise Unmappable(f"{names[0]}: {why}")
        return value

    def time(self, *names: str, zone: tzinfo | None = None) -> int | None:
        """The epoch ms of the first filled date column (naive in `zone`, else the row's)."""
        for name in names:
            value = self.text(name)
            if value is not None:
                return parse_time_ms(value, zone or self.zone, name)
        return None

    def required_time(self, *names: str, why: str = "is required") -> int:
        """Like `time`, but a missing date is `Unmappable`."""
        value = self.time(*names)
        if value is None:
            raise Unmappable(f"{names[0]}: {why}")
        return value

    def code(self, *names: str) -> str | None:
        """A code column (a currency) in upper case."""
        value = self.text(*names)
        return None if value is None else value.upper()

    def money(self, *names: str) -> tuple[Decimal | None, str | None]:
        """An amount and the currency its text names (`EUR 1.234,50`, `£12`), if any."""
        for name in names:
            value = self.text(name)
            if value is not None:
                return parse_amount(value, name)
        return None, None

    def flag(self, *names: str) -> bool | None:
        """A checkbox column (`1`/`0`, `true`/`false`, `yes`/`no`); None when absent or empty."""
        for name in names:
            value = self.text(name)
            if value is not None:
                return parse_flag(value, name)
        return None

    def number(self, *names: str, default: Decimal) -> Decimal:
        """A plain number (a quantity, an interval count); `default` when empty."""
        value = self.text(*names)
        if value is None:
            return default
        amount, _ = parse_amount(value, names[0])
        return amount

    def first_id(self, *names: str) -> str | None:
        """An id column that may list several (`123;456`): the first one."""
        value = self.text(*names)
        if value is None:
            return None
        return re.split(r"[;,]", value)[0].strip() or None


def parse_time_ms(text: str, zone: tzinfo, column: str = "date") -> int:
    """Epoch ms of an ISO 8601, `YYYY-MM-DD HH:MM` or US `MM/DD/YYYY hh:mm AM` date.

    A date without a time is midnight; a value without an offset is local time in `zone`.
    """
    match = DATE.fullmatch(text.strip())
    if match is None:
        raise Unmappable(f"{column}: unreadable date {text!r} ({DATE_EXAMPLES})")
    parts = match.groupdict()
    year, month, day = (parts["y"], parts["m"], parts["d"]) if parts["y"] else (
        parts["us_y"], parts["us_m"], parts["us_d"])
    hour = int(parts["hh"] or 0)
    ampm = (parts["ampm"] or "").replace(".", "").lower()
    if ampm and not 1 <= hour <= 12:
        raise Unmappable(f"{column}: unreadable date {text!r} (hour {hour} with {ampm.upper()})")
    if ampm:
        hour = hour % 12 + (12 if ampm == "pm" else 0)
    try:
        moment = datetime(int(year), int(month), int(day), hour, int(parts["mm"] or 0),  # noqa: DTZ001
                          int(parts["ss"] or 0))
    except ValueError as error:
        raise Unmappable(f"{column}: unreadable date {text!r} ({error})") from None
    moment = moment.replace(tzinfo=_zone_of(parts["tz"], zone))
    ms = (moment - EPOCH) // timedelta(milliseconds=1)
    return ms + int((parts["frac"] or "0")[:3].ljust(3, "0"))


def _zone_of(suffix: str | None, zone: tzinfo) -> tzinfo:
    if suffix is None:
        return zone
    if suffix in UTC_SUFFIXES:
        return UTC
    sign = -1 if suffix[0] == "-" else 1
    digits = suffix[1:].replace(":", "")
    return timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))


def parse_amount(text: str, column: str = "amount") -> tuple[Decimal, str | None]:
    """A decimal amount written with a currency code or symbol and thousand separators.

    `1,234.50`, `1.234,50`, `$1,234.50`, `EUR 1234.5` and `1 234,50 €` all read as 1234.5;
    a lone comma followed by exactly three digits (`1,234`) is a thousands separator, and
    `(12.00)` is -12 (which no canonical amount accepts: the row is reported).
    """
    value = text.strip().replace("\u00a0", " ").replace("\u202f", " ")
    currency = next((code for symbol, code in SYMBOLS.items() if symbol in value), None)
    code = CODE.search(value)
    if code is not None:
        currency = (code.group(1) or code.group(2)).upper()
        value = CODE.sub("", value, count=1)
    number = re.sub(r"[^\d.,\-]", "", value)
    if value.startswith("(") and value.endswith(")"):  # accounting notation for a negative
        number = "-" + number
    try:
        return Decimal(_plain(number)), currency
    except InvalidOperation:
        raise Unmappable(f"{column}: not an amount: {text!r}") from None


def _plain(number: str) -> str:
    """`1,234.50` / `1.234,50` / `1234,5` as `1234.50` / `1234.50` / `1234.5`."""
    if "," in number and "." in number:
        decimal_mark = "," if number.rfind(",") > number.rfind(".") else "."
        other = "." if decimal_mark == "," else ","
        return number.replace(other, "").replace(decimal_mark, ".")
    if "," in number:
        digits = number.lstrip("-")
        return number.replace(",", "") if THOUSANDS.fullmatch(digits) else number.replace(",", ".")
    if number.count(".") > 1:
        return number.replace(".", "")
    return number


def parse_flag(text: str, column: str = "flag") -> bool:
    """A checkbox value."""
    value = text.strip().lower()
    if value in TRUE:
        return True
    if value in FALSE:
        return False
    raise Unmappable(f"{column}: expected true/false or 1/0, got {text!r}")


def short(text: str | None) -> str | None:
    """A free-text value cut to what a canonical string field holds."""
    return None if text is None else text[:MAX_TEXT]
