"""EVM deposit watcher (BSC, Polygon): USDT Transfer logs to our addresses become deposits.

One scan of a chain:
1. The heads: `latest`, and the confirmed head: the `finalized` block where the node knows that
   tag, else latest − TOLLGATE_<CHAIN>_CONFIRMATIONS.
2. Blocks from the cursor (chain_cursors) up to the confirmed head, in eth_getLogs ranges of at
   most TOLLGATE_<CHAIN>_LOG_RANGE blocks, filtered to the accepted USDT contract and to our
   addresses: each range's deposits are recorded and the cursor moved past it in one SQL
   transaction. A node that refuses a range gets it halved; one that keeps failing ends the scan
   there (evm_rpc backs off first), so no block is ever skipped.
3. The unconfirmed tail (confirmed head + 1 .. latest) is read every scan without moving the
   cursor: its deposits are recorded as `seen` (customers see them coming), and a re-org of the
   tail is simply read again.
4. Every `seen` deposit is checked against the hash of the block now at its height: another
   hash, or no block, means a re-org took it (`orphaned`, never credited); the same hash at or
   below the confirmed head makes it `confirmed`. A transfer mined again after a re-org takes its
   row back with its new block when the scan finds it.
5. Every `confirmed` deposit is credited: ledger.credit_and_publish, once per (chain, tx hash,
   log index), then the Redis balance.

Each Transfer log is one deposit, so a transaction with several transfers to us is several.
RPC calls happen outside SQL transactions; writes re-check what they change.
"""
from __future__ import annotations

from sqlalchemy import func, select

from .. import db
from ..errors import ServiceError
from ..models import Deposit, DepositAddress
from ..settings import Settings
from . import cursors, tokens
from .evm_rpc import EvmRpc, RangeRefused, TransferLog
from .ledger import credit_and_publish, record_deposit
from .scan_report import ScanReport

RECIPIENTS_PER_CALL = 500  # addresses in one eth_getLogs topic filter


class EvmWatcher:
    """A chain's watcher; creating it checks the contract's decimals() against the settings."""

    def __init__(self, settings: Settings, chain: str):
        self.settings = settings
        self.chain = chain
        self.config = settings.evm_chain(chain)
        if not self.config.rpc_url:
            raise ServiceError(f"TOLLGATE_{chain.upper()}_RPC_URL is not set: {chain} deposits are not watched")
        self.allowed = tokens.accepted(settings)
        self.rpc = EvmRpc(chain, self.config.rpc_url)
        self._check_decimals()

    def _check_decimals(self) -> None:
        contract, expected = self.config.usdt_contract, self.config.usdt_decimals
        reported = self.rpc.decimals(contract)
        if reported != expected:
            found = "no decimals() (no token contract there)" if reported is None else f"decimals() = {reported}"
            raise ServiceError(
                f"{self.chain}: the USDT contract {contract} answers {found}, but TOLLGATE_{self.chain.upper()}"
                f"_USDT_DECIMALS is {expected}; refusing to watch {self.chain} (check the contract and its decimals)"
            )

    def scan(self, *, from_block: int | None = None, to_block: int | None = None, progress=None) -> ScanReport:
        latest = self.rpc.latest().number
        finalized = self.rpc.finalized()
        confirmed = min(finalized.number, latest) if finalized else latest - self.config.confirmations
        recipients = self._recipients()  # after the heads: an address used in a block they cover is in it
        start = self._start(from_block, confirmed)
        end = latest if to_block is None else min(to_block, latest)
        report = ScanReport(self.chain, start, max(start - 1, end))
        total, block, span = max(0, end - start + 1), start, self.config.log_range
        while block <= end:
            last = min(end, block + span - 1, confirmed if block <= confirmed else end)
            try:
                found = self._transfers(recipients, block, last)
            except RangeRefused:
                if last == block:
                    raise
                span = (last - block + 1) // 2
                continue
            report.found += self._record(found, recipients, block, cursor=last + 1 if last <= confirmed else None)
            block = last + 1
            if progress is not None:
                progress(block - start, total)
        self._settle(latest, confirmed, report)
        return report

    def _recipients(self) -> dict[str, int]:
        with db.read_session(self.settings) as session:
            rows = session.execute(select(DepositAddress.address, DepositAddress.account_id)
                                   .where(DepositAddress.family == "evm")).all()
        return {address.lower(): account_id for address, account_id in rows}

    def _start(self, from_block: int | None, confirmed: int) -> int:
        if from_block is not None:
            return from_block
        with db.session_scope(self.settings) as session:
            start = cursors.next_block(session, self.chain)
            if start is None:
                # The first scan: from the configured block, else from the blocks confirmed next.
                start = self.config.start_block if self.config.start_block is not None else max(0, confirmed + 1)
                cursors.advance(session, self.chain, start)
        return start

    def _transfers(self, recipients: dict[str, int], first: int, last: int) -> list[TransferLog]:
        addresses = sorted(recipients)
        found = []
        for offset in range(0, len(addresses), RECIPIENTS_PER_CALL):
            found += self.rpc.transfers(self.config.usdt_contract, addresses[offset:offset + RECIPIENTS_PER_CALL],
                                        first, last)
        return found

    def _record(self, found: list[TransferLog], recipients: dict[str, int], first: int, cursor: int | None) -> int:
        """Record the transfers of blocks first..cursor-1 (and move the cursor to `cursor` when it
        stands within them) in one transaction; how many are new. A cursor below `first` was moved
        back by a rescan while this scan ran (or was never reached): it stays, so no block below
        it is left unscanned."""
        new = 0
        with db.session_scope(self.settings) as session:
            for transfer in found:
                if transfer.amount == 0 or transfer.to not in recipients:
                    continue  # zero-value transfers are address-poisoning spam, not deposits
                before = session.scalar(select(func.count()).select_from(Deposit).where(
                    Deposit.chain == self.chain, Deposit.tx_hash == transfer.tx_hash,
                    Deposit.log_index == transfer.log_index))
                deposit = record_deposit(
                    session, chain=self.chain, tx_hash=transfer.tx_hash, log_index=transfer.log_index,
                    account_id=recipients[transfer.to], token_contract=self.config.usdt_contract,
                    amount=transfer.amount, block_number=transfer.block_number, block_hash=transfer.block_hash,
                    allowed=self.allowed,
                )
                new += not before
                if deposit.status in ("seen", "orphaned") and deposit.block_hash != transfer.block_hash:
                    # Mined again after a re-org: the row follows the transfer to its new block.
                    deposit.block_number, deposit.block_hash, deposit.status = (
                        transfer.block_number, transfer.block_hash, "seen")
            current = cursors.next_block(session, self.chain) or 0
            if cursor is not None and first <= current < cursor:
                cursors.advance(session, self.chain, cursor)
        return new

    def _settle(self, latest: int, confirmed: int, report: ScanReport) -> None:
        with db.read_session(self.settings) as session:
            seen = session.execute(select(Deposit.id, Deposit.block_number, Deposit.block_hash)
                                   .where(Deposit.chain == self.chain, Deposit.status == "seen")).all()
        hashes = {number: self.rpc.block_hash(number) if number <= latest else None
                  for number in sorted({row.block_number for row in seen})}
        with db.session_scope(self.settings) as session:
            for row in seen:
                deposit = session.get(Deposit, row.id)
                if deposit.status != "seen" or deposit.block_hash != row.block_hash:
                    continue  # changed by another scan meanwhile
                if hashes[row.block_number] != row.block_hash:
                    deposit.status = "orphaned"
                    report.orphaned += 1
                elif row.block_number <= confirmed:
                    deposit.status = "confirmed"
            credited_before = self._count(session, "credited")
            pending = session.scalars(select(Deposit.id).where(Deposit.chain == self.chain,
                                                               Deposit.status == "confirmed")).all()
        for deposit_id in pending:
            credit_and_publish(self.settings, deposit_id)
        with db.read_session(self.settings) as session:
            report.credited = self._count(session, "credited") - credited_before

    def _count(self, session, status: str) -> int:
        return session.scalar(select(func.count()).select_from(Deposit)
                              .where(Deposit.chain == self.chain, Deposit.status == status))


def scan(settings: Settings, *, chain: str, from_block: int | None = None, to_block: int | None = None,
         progress=None) -> ScanReport:
    """One scan of an EVM chain (bsc, polygon); see the module's doc."""
    return EvmWatcher(settings, chain).scan(from_block=from_block, to_block=to_block, progress=progress)
