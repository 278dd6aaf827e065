"""Personal data out of free text before it is stored: e-mail, phone, IBAN, card, numbers, names.

Every text a customer or agent types may carry personal data (a customer who pastes a
signature into the FAQ box, an agent who sends a whole e-mail to assist). :class:`Redactor`
replaces what it recognises with a placeholder naming the kind, ``[email]``, ``[phone]``,
``[iban]``, ``[card]``, ``[number]``, ``[address]`` and ``[name]``, and leaves the rest of
the text as it was, so that the question is still searchable.

What counts, and what must not be taken for personal data:

- e-mail addresses;
- IBANs and payment card numbers, only when their checksum holds (ISO 13616 mod 97, Luhn),
  so that article numbers and meter readings stay;
- phone numbers: a leading ``+``, ``00`` or ``0`` and at least seven digits; dates
  (``01.12.2026``), times and prices (``0,99 €``) are no phone numbers;
- customer, contract and account numbers after the words that introduce them
  (``Kundennummer 12345678``, ``contract no. AB-1234``), and whatever extra patterns the
  operator configures;
- postal addresses: a street with its house number, a postcode with its town;
- names where a text says it is one: after ``Herr``/``Frau``/``Mr``/``Ms``, ``mein Name
  ist``, ``my name is``, ``ich heiße``, and in the closing of a letter (``Viele Grüße``).

Redaction is deliberately a little greedy: a false alarm costs a word of a stored query, a
miss keeps a person's data in the log for good.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

PLACEHOLDERS = ("[email]", "[phone]", "[iban]", "[card]", "[number]", "[address]", "[name]")

EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+", re.UNICODE)
IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,3})?\b")
CARD = re.compile(r"\b\d(?:[ -]?\d){12,18}\b")
PHONE = re.compile(r"(?<![\w+])(?:\+|00|0)\d(?:[ /()-]{0,2}\d){5,}(?!\w)")
DATE_OR_TIME = re.compile(r"^\d{1,2}[./]\d{1,2}[./]\d{2,4}$|^\d{1,2}:\d{2}$")
NUMBER_CUE = re.compile(
    r"(?i)\b(?:kunden|vertrags|konto|rechnungs|customer|contract|account|invoice)"
    r"[- ]?(?:nummer|nr\.?|number|no\.?|id)\s*(?:[:#]|\b(?:ist|lautet|is)\b)?\s*"
    r"(?=[A-Z-]*\d)([A-Z0-9][A-Z0-9-]{3,})"
)
STREET = re.compile(
    r"\b[A-ZÄÖÜ][\wäöüß-]*(?:straße|strasse|str\.|weg|gasse|platz|allee|ring|damm|ufer)"
    r"\s+\d{1,4}\s?[a-zA-Z]?\b"
    r"|\b\d{1,5}\s+[A-Z][a-z]+(?:\s+[A-Z][a-z]+)?\s+(?:Street|St\.|Road|Rd\.|Avenue|Ave\.|"
    r"Lane|Drive|Way)\b"
)
POSTCODE_TOWN = re.compile(r"\b\d{5}\s+[A-ZÄÖÜ][a-zäöüß]+(?:[- ][A-ZÄÖÜ][a-zäöüß]+)?\b")
NAME_WORD = r"[A-ZÄÖÜ][a-zäöüß]+(?:-[A-ZÄÖÜ][a-zäöüß]+)?"
NAME_CUE = re.compile(
    r"(?:\b(?:Herrn?|Frau|Mr\.?|Mrs\.?|Ms\.?|Dr\.?)\s+|(?i:\bmein name ist\s+|\bmy name is\s+"
    r"|\bich hei(?:ß|ss)e\s+|\bi am\s+(?=[A-Z])))"
    rf"({NAME_WORD}(?:\s+{NAME_WORD})?)"
)
CLOSING = re.compile(
    r"(?i:\b(?:viele|beste|liebe|freundliche|herzliche)\s+grü(?:ß|ss)e"
    r"|mit freundlichen grü(?:ß|ss)en|\bmfg|\bvg|\bbest regards|\bkind regards|\bregards"
    r"|\bbest wishes|\bcheers|\bthanks"
    r"|\bdanke)[,!.]?\s*\n?\s*"
    rf"({NAME_WORD}(?:\s+{NAME_WORD})?)\s*$",
    re.MULTILINE,
)


@dataclass(frozen=True)
class Finding:
    """One piece of personal data: its kind (the placeholder) and where it is in the text."""

    kind: str
    start: int
    end: int


def iban_valid(candidate: str) -> bool:
    """Return whether an IBAN's check digits hold (ISO 13616: the number mod 97 is 1)."""
    compact = candidate.replace(" ", "").upper()
    if not 15 <= len(compact) <= 34 or not compact[:2].isalpha():
        return False
    digits = "".join(str(int(c, 36)) for c in compact[4:] + compact[:4])
    return int(digits) % 97 == 1


def luhn_valid(candidate: str) -> bool:
    """Return whether a card number's Luhn check digit holds."""
    digits = [int(c) for c in candidate if c.isdigit()]
    if not 13 <= len(digits) <= 19:
        return False
    total = 0
    for i, digit in enumerate(reversed(digits)):
        if i % 2:
            digit *= 2
            digit -= 9 if digit > 9 else 0
        total += digit
    return total % 10 == 0


def _phone(match: re.Match[str]) -> bool:
    text = match.group()
    digits = sum(c.isdigit() for c in text)
    return digits >= 7 and not DATE_OR_TIME.match(text.strip())


@dataclass(frozen=True)
class Redactor:
    """Finds personal data in free text and replaces it with placeholders.

    ``extra`` are the operator's own patterns (customer or contract numbers in the house
    format); what they match becomes ``[number]``.
    """

    extra: tuple[re.Pattern[str], ...] = ()

    @classmethod
    def with_patterns(cls, patterns: Iterable[str]) -> Redactor:
        """Return a redactor that also removes what these regular expressions match."""
        return cls(tuple(re.compile(p) for p in patterns))

    def findings(self, text: str) -> list[Finding]:
        """Return the personal data found in a text, in order, without overlaps."""
        found: list[Finding] = []
        found += [Finding("[email]", *m.span()) for m in EMAIL.finditer(text)]
        found += [Finding("[iban]", *m.span()) for m in IBAN.finditer(text)
                  if iban_valid(m.group())]
        found += [Finding("[card]", *m.span()) for m in CARD.finditer(text)
                  if luhn_valid(m.group())]
        found += [Finding("[number]", *m.span(1)) for m in NUMBER_CUE.finditer(text)]
        found += [Finding("[number]", *m.span()) for p in self.extra for m in p.finditer(text)]
        found += [Finding("[address]", *m.span()) for m in STREET.finditer(text)]
        found += [Finding("[address]", *m.span()) for m in POSTCODE_TOWN.finditer(text)]
        found += [Finding("[name]", *m.span(1)) for m in NAME_CUE.finditer(text)]
        found += [Finding("[name]", *m.span(1)) for m in CLOSING.finditer(text)]
        found += [Finding("[phone]", *m.span()) for m in PHONE.finditer(text) if _phone(m)]
        return _without_overlaps(found)

    def redact(self, text: str) -> str:
        """Return the text with every piece of personal data replaced by its placeholder."""
        out: list[str] = []
        last = 0
        for finding in self.findings(text):
            out.append(text[last:finding.start])
            out.append(finding.kind)
            last = finding.end
        out.append(text[last:])
        return "".join(out)


def _without_overlaps(found: Sequence[Finding]) -> list[Finding]:
    """Keep the earliest, then the longest, of findings that overlap."""
    kept: list[Finding] = []
    for finding in sorted(found, key=lambda f: (f.start, -(f.end - f.start))):
        if kept and finding.start < kept[-1].end:
            continue
        kept.append(finding)
    return kept
