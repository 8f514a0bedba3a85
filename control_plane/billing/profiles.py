"""Billing profiles: who an account's invoices are made out to (legal name, address, country, tax
id, the address invoices go to). Each invoice copies the profile as it stands when it is issued,
so a change here never alters an issued one. Changes are audited (audit.py) like every other
configuration row.
"""
from __future__ import annotations

from sqlalchemy.orm import Session

from ..accounts.accounts import EMAIL
from ..errors import ServiceError
from ..models import BillingProfile

MAX_LEGAL_NAME = 200
MAX_ADDRESS = 1000
MAX_TAX_ID = 64
MAX_EMAIL = 320
# ISO 3166-1 alpha-2, the officially assigned codes (as tzdata's iso3166.tab lists them): a code
# that is not one (UK for GB, EL for GR) would match no tax rule.
_ASSIGNED = """
AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV
BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES
ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE
IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY
MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU
NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM
SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE
VG VI VN VU WF WS YE YT ZA ZM ZW
"""
COUNTRIES = frozenset(_ASSIGNED.split())


class ProfileError(ServiceError):
    """A field of a billing profile that cannot be saved: `field` names it, so a form shows the
    message beside it and the API names it."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def get(session: Session, account_id: int) -> BillingProfile | None:
    return session.get(BillingProfile, account_id)


def save(session: Session, account_id: int, *, legal_name, address, country, tax_id,
         invoice_email) -> BillingProfile:
    """Create or replace the account's profile with these values, cleaned (surrounding space
    stripped, the country upper-cased); ProfileError for the first that cannot be used, nothing
    changed. The caller commits."""
    values = {
        "legal_name": _line(legal_name, "legal_name", "The legal name", MAX_LEGAL_NAME),
        "address": _address(address),
        "country": _country(country),
        "tax_id": _line(tax_id, "tax_id", "The tax id", MAX_TAX_ID),
        "invoice_email": _email(invoice_email),
    }
    profile = get(session, account_id)
    if profile is None:
        profile = BillingProfile(account_id=account_id)
        session.add(profile)
    for field, value in values.items():
        setattr(profile, field, value)
    session.flush()
    return profile


def _text(value, field: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ProfileError(field, "Give text")
    return value.strip()


def _line(value, field: str, label: str, limit: int) -> str:
    text = _text(value, field)
    if len(text) > limit:
        raise ProfileError(field, f"{label} is at most {limit} characters")
    if not text.isprintable():
        raise ProfileError(field, f"{label} is one line of printable characters")
    return text


def _address(value) -> str:
    """Lines (any newline convention) with their surrounding space stripped, blank ones at the
    start and end dropped."""
    lines = [line.strip() for line in _text(value, "address").splitlines()]
    text = "\n".join(lines).strip("\n")
    if len(text) > MAX_ADDRESS:
        raise ProfileError("address", f"The address is at most {MAX_ADDRESS} characters")
    if not all(line.isprintable() for line in lines):
        raise ProfileError("address", "The address is lines of printable characters")
    return text


def _country(value) -> str:
    code = _text(value, "country").upper()
    if code and code not in COUNTRIES:
        raise ProfileError("country", "Give the country's two-letter ISO 3166 code, e.g. DE, or leave it empty")
    return code


def _email(value) -> str:
    address = _text(value, "invoice_email")
    if address and (len(address) > MAX_EMAIL or not EMAIL.fullmatch(address)):
        raise ProfileError("invoice_email", "Give an e-mail address such as billing@example.com, or leave it "
                                            "empty to use the account's")
    return address
