"""The TRON watcher: USDT-TRC20 transfers to the accounts' deposit addresses, credited once their
block is solidified and their receipt says SUCCESS.

`scan` covers block numbers from the cursor (or `from_block`) to the newest solidified block (or
`to_block`, if lower), in steps of STEP_BLOCKS. Each step:

1. Finds candidates: the step's first and last block give its timestamps (walletsolidity/getblock),
   and TronGrid lists each deposit address's incoming transfers of the accepted contract in that
   window, widened by 1 ms on each side so either reading of min/max_timestamp includes the edge
   blocks (blocks are 3 s apart, so no neighbour creeps in; the receipt's block number decides
   anyway), following `fingerprint` pages. Unconfirmed transfers are listed too, on purpose:
   TronGrid lists a transfer when its block is made, about a minute before the block is
   solidified, so the listing of a solidified range is complete; its `only_confirmed` view could
   lag its indexer, and the cursor would pass a transfer it had not marked yet.
2. Reads each candidate's receipt from the solidified state (walletsolidity/gettransactioninfobyid).
   The receipt decides: its blockNumber must lie in the step; receipt.result must be SUCCESS
   (REVERT, OUT_OF_ENERGY, … never credit); every Transfer event emitted by the accepted contract
   (matched by address, never by symbol) to one of our addresses is one deposit, keyed
   (tron, txid, index of the event in the receipt's log), with the exact amount in base units from
   the event's data (6 decimals; TronGrid's `value` is not used). Zero-amount transfers (address
   poisoning spam) are ignored. A candidate in the solidified range whose solidified receipt the
   node does not have yet means the node lags: the scan ends before this step and the next scan
   repeats it.
3. Records the step's deposits as confirmed and advances the cursor past the step in one SQL
   transaction, then credits every confirmed TRON deposit through the ledger (once per idempotency
   key, minimum and bonus applied) and publishes the credits to Redis. Deposits recorded by a scan
   that died before crediting are credited by the next scan's first step.

A rescan (`from_block` below the cursor) finds the same deposits and credits nothing again; it never
moves the cursor back.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import func, select

from .. import db
from ..errors import ServiceError
from ..models import Deposit, DepositAddress, LedgerTransaction
from ..settings import Settings
from . import cursors
from .ledger import credit_and_publish, normal_tx_hash, record_deposit
from .scan_report import ScanReport
from .tokens import Token, accepted
from .trongrid import TronGrid

log = logging.getLogger(__name__)

CHAIN = "tron"
STEP_BLOCKS = 7200  # six hours of 3-second blocks per committed step
TRANSFER_TOPIC = "ddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"  # Transfer(address,address,uint256)


@dataclass(frozen=True)
class Transfer:
    txid: str
    log_index: int
    to: str  # base58
    amount: int  # base units
    block_number: int


class NodeLags(Exception):
    """A listed transaction in the solidified range has no solidified receipt on the node yet."""


def transfers_in_receipt(txid: str, info: dict, contract_hex: str) -> list[Transfer]:
    """The non-zero Transfer events of the contract (20-byte hex) in a successful receipt."""
    from tronpy.keys import to_base58check_address

    if (info.get("receipt") or {}).get("result") != "SUCCESS":
        return []
    found = []
    for index, entry in enumerate(info.get("log") or []):
        topics = [str(topic).lower() for topic in entry.get("topics") or []]
        data = str(entry.get("data") or "")
        if str(entry.get("address", "")).lower()[-40:] != contract_hex or len(topics) != 3 \
                or topics[0] != TRANSFER_TOPIC or len(data) != 64:
            continue
        amount = int(data, 16)
        if amount:
            found.append(Transfer(txid, index, to_base58check_address("41" + topics[2][-40:]), amount,
                                  int(info["blockNumber"])))
    return found


def scan(settings: Settings, *, from_block: int | None = None, to_block: int | None = None,
         progress: Callable[[int, int], None] | None = None) -> ScanReport:
    """Scan solidified TRON blocks for deposits, record and credit them; see the module docstring."""
    allowed = accepted(settings)
    contract = settings.tron_usdt_contract
    contract_hex = _hex20(contract)
    client = TronGrid(settings)
    head = client.solid_head().number
    with db.session_scope(settings) as session:
        start = cursors.next_block(session, CHAIN) if from_block is None else from_block
    if start is None:
        start = head if settings.tron_start_block is None else settings.tron_start_block
    end = head if to_block is None else min(to_block, head)
    report = ScanReport(CHAIN, start, start - 1)
    total = max(end - start + 1, 0)
    for low in range(start, end + 1, STEP_BLOCKS):
        high = min(low + STEP_BLOCKS - 1, end)
        owners = _owners(settings)
        try:
            transfers = _find_transfers(client, owners, contract, contract_hex, low, high)
        except NodeLags as exc:
            log.warning("tron: blocks %d..%d not scanned yet, the node's solidified state lags: %s", low, high, exc)
            break
        report.found += _record(settings, client, transfers, owners, allowed, low, high)
        report.credited += _credit_confirmed(settings)
        report.to_block = high
        if progress is not None:
            progress(high - start + 1, total)
    return report


def _hex20(address: str) -> str:
    from tronpy.exceptions import BadAddress
    from tronpy.keys import to_hex_address

    try:
        return to_hex_address(address)[2:]
    except (BadAddress, ValueError) as exc:
        raise ServiceError(f"TOLLGATE_TRON_USDT_CONTRACT {address!r} is not a TRON address: {exc}") from None


def _owners(settings: Settings) -> dict[str, int]:
    """{base58 deposit address: account id} of every TRON deposit address."""
    with db.read_session(settings) as session:
        rows = session.execute(select(DepositAddress.address, DepositAddress.account_id)
                               .where(DepositAddress.family == CHAIN))
        return {address: account_id for address, account_id in rows}


def _find_transfers(client: TronGrid, owners: dict[str, int], contract: str, contract_hex: str,
                    low: int, high: int) -> list[Transfer]:
    if not owners:
        return []
    first, last = client.solid_block(low).timestamp, client.solid_block(high).timestamp
    txids = {}  # insertion-ordered set: a transaction paying two of our addresses is read once
    for address in owners:
        for item in client.incoming_trc20(address, contract, first - 1, last + 1):
            if item.get("to") == address and item.get("transaction_id"):
                txids[item["transaction_id"]] = None
    transfers = []
    for txid in txids:
        info = client.solid_transaction_info(txid)
        if info is None:
            raise NodeLags(f"transaction {txid}")
        if not low <= int(info.get("blockNumber", -1)) <= high:
            continue
        transfers.extend(transfer for transfer in transfers_in_receipt(txid, info, contract_hex)
                         if transfer.to in owners)
    return transfers


def _record(settings: Settings, client: TronGrid, transfers: list[Transfer], owners: dict[str, int],
            allowed: tuple[Token, ...], low: int, high: int) -> int:
    """Record the deposits of blocks low..high and move the cursor past them when it stands within
    them, in one transaction; how many are new. A cursor below `low` was moved back by a rescan
    while this scan ran: it stays, so no block below it is left unscanned."""
    block_ids = {number: client.solid_block(number).block_id for number in {t.block_number for t in transfers}}
    with db.session_scope(settings) as session:
        known = {(tx_hash, log_index) for tx_hash, log_index in session.execute(
            select(Deposit.tx_hash, Deposit.log_index)
            .where(Deposit.chain == CHAIN, Deposit.tx_hash.in_({normal_tx_hash(CHAIN, t.txid) for t in transfers})))}
        for transfer in transfers:
            record_deposit(session, chain=CHAIN, tx_hash=transfer.txid, log_index=transfer.log_index,
                           account_id=owners[transfer.to], token_contract=settings.tron_usdt_contract,
                           amount=transfer.amount, block_number=transfer.block_number,
                           block_hash=block_ids[transfer.block_number], status="confirmed", allowed=allowed)
        current = cursors.next_block(session, CHAIN)
        if current is None or low <= current < high + 1:
            cursors.advance(session, CHAIN, high + 1)
    return sum((normal_tx_hash(CHAIN, t.txid), t.log_index) not in known for t in transfers)


def _credit_confirmed(settings: Settings) -> int:
    """Credit every recorded, not yet credited TRON deposit; how many deposits this credited."""
    with db.read_session(settings) as session:
        pending = session.scalars(select(Deposit.id).where(Deposit.chain == CHAIN, Deposit.status == "confirmed")
                                  .order_by(Deposit.id)).all()
    posted = [transaction_id for deposit_id in pending for transaction_id in credit_and_publish(settings, deposit_id)]
    if not posted:
        return 0
    with db.read_session(settings) as session:
        return session.scalar(select(func.count()).select_from(LedgerTransaction)
                              .where(LedgerTransaction.id.in_(posted), LedgerTransaction.kind == "deposit"))
