"""The few JSON-RPC calls the EVM watcher makes (through web3), each retried with backoff.

A transport failure, an HTTP error (429 too many requests, 5xx) or a node's error answer is
retried after a pause that doubles from FIRST_PAUSE_SECONDS up to MAX_PAUSE_SECONDS (a
`Retry-After` header is honoured up to that cap); after ATTEMPTS tries the call raises RpcError
and the scan stops where it was: no block is ever skipped. Two answers are not retried because
they are answers: the node does not know the `finalized` tag (the watcher falls back to a depth),
and the node refuses an eth_getLogs range (RangeRefused: the watcher halves the range).

RPC URLs often carry an API key, so no message here contains one: errors name the chain, the
method and the HTTP status or the node's error text, never the URL.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import requests
from web3 import Web3
from web3.exceptions import (
    BadFunctionCallOutput,
    BlockNotFound,
    ContractLogicError,
    Web3Exception,
    Web3RPCError,
)
from web3.middleware import ExtraDataToPOAMiddleware

from . import backoff

log = logging.getLogger(__name__)
# web3 and urllib3 log every request's URL at DEBUG, and an RPC URL may carry an API key.
for _library in ("web3", "urllib3"):
    logging.getLogger(_library).setLevel(logging.WARNING)

ATTEMPTS = 6
FIRST_PAUSE_SECONDS = 0.25
MAX_PAUSE_SECONDS = 8.0
TIMEOUT_SECONDS = 20
TRANSFER_TOPIC = "0x" + Web3.keccak(text="Transfer(address,address,uint256)").hex().removeprefix("0x")
DECIMALS_ABI = [{"name": "decimals", "type": "function", "stateMutability": "view", "inputs": [],
                 "outputs": [{"name": "", "type": "uint8"}]}]


class RpcError(Exception):
    """The node could not be reached or kept failing; nothing after the last committed range is lost."""


class RangeRefused(RpcError):
    """The node answered eth_getLogs with an error (range too wide, too many results)."""


@dataclass(frozen=True)
class Block:
    number: int
    hash: str  # 0x… lowercase


@dataclass(frozen=True)
class TransferLog:
    tx_hash: str
    log_index: int
    block_number: int
    block_hash: str
    to: str  # 0x… lowercase
    amount: int  # base units


def _hex(value) -> str:
    return "0x" + bytes(value).hex()


def _pause(exc: Exception, attempt: int) -> float:
    pause = min(MAX_PAUSE_SECONDS, FIRST_PAUSE_SECONDS * 2 ** attempt)
    response = getattr(exc, "response", None)
    retry_after = response.headers.get("Retry-After", "") if response is not None else ""
    if retry_after.strip().isdigit():
        pause = min(MAX_PAUSE_SECONDS, float(retry_after))
    return pause


def _describe(exc: Exception) -> str:
    """What went wrong, without the URL (requests puts it into its messages)."""
    if isinstance(exc, Web3RPCError):
        error = exc.rpc_response.get("error") if isinstance(exc.rpc_response, dict) else None
        message = error.get("message") if isinstance(error, dict) else None
        return f"node error: {message or exc.message}"
    response = getattr(exc, "response", None)
    if response is not None:
        return f"HTTP {response.status_code}"
    return type(exc).__name__


class EvmRpc:
    def __init__(self, chain: str, url: str):
        self.chain = chain
        self.web3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": TIMEOUT_SECONDS},
                                           exception_retry_configuration=None))
        # BSC and Polygon blocks carry more extraData than Ethereum's 32 bytes.
        self.web3.middleware_onion.inject(ExtraDataToPOAMiddleware, layer=0)

    def _call(self, method: str, call, *, answers=()):
        """call() retried with backoff; exceptions in `answers` are raised at once."""
        for attempt in range(ATTEMPTS):
            try:
                return call()
            except answers:
                raise
            except (requests.RequestException, Web3Exception, ValueError) as exc:
                if attempt == ATTEMPTS - 1:
                    raise RpcError(f"{self.chain} RPC {method} failed {ATTEMPTS} times: {_describe(exc)}") from None
                pause = _pause(exc, attempt)
                log.warning("%s RPC %s: %s; retrying in %.2f s", self.chain, method, _describe(exc), pause)
                if backoff.pause(pause):
                    raise RpcError(f"{self.chain} RPC {method}: {_describe(exc)}; not retried, the watcher is "
                                   "stopping") from None
        raise AssertionError("unreachable")

    def latest(self) -> Block:
        return self._block("latest")

    def finalized(self) -> Block | None:
        """The finalized block, or None where the node does not know the tag."""
        try:
            return self._call("eth_getBlockByNumber(finalized)", lambda: self._get_block("finalized"),
                              answers=(Web3RPCError, BlockNotFound))
        except (Web3RPCError, BlockNotFound):
            return None

    def block_hash(self, number: int) -> str | None:
        """The hash of the chain's block at this height now, or None when there is none (yet)."""
        try:
            return self._call("eth_getBlockByNumber", lambda: self._get_block(number), answers=(BlockNotFound,)).hash
        except BlockNotFound:
            return None

    def _block(self, tag) -> Block:
        return self._call("eth_getBlockByNumber", lambda: self._get_block(tag))

    def _get_block(self, tag) -> Block:
        block = self.web3.eth.get_block(tag)
        return Block(block["number"], _hex(block["hash"]))

    def decimals(self, contract: str) -> int | None:
        """The token's decimals(), or None when the address answers none (no token contract there)."""
        token = self.web3.eth.contract(address=Web3.to_checksum_address(contract), abi=DECIMALS_ABI)
        try:
            return self._call("eth_call(decimals)", token.functions.decimals().call,
                              answers=(BadFunctionCallOutput, ContractLogicError))
        except (BadFunctionCallOutput, ContractLogicError):
            return None

    def transfers(self, contract: str, recipients: list[str], first: int, last: int) -> list[TransferLog]:
        """Transfer logs of `contract` to any of `recipients` in blocks first..last (inclusive)."""
        padded = ["0x" + "00" * 12 + address.lower().removeprefix("0x") for address in recipients]
        topics = [TRANSFER_TOPIC, None, padded]
        query = {"address": Web3.to_checksum_address(contract), "fromBlock": first, "toBlock": last, "topics": topics}
        try:
            logs = self._call("eth_getLogs", lambda: self.web3.eth.get_logs(query), answers=(Web3RPCError,))
        except Web3RPCError as exc:
            raise RangeRefused(f"{self.chain} RPC eth_getLogs {first}..{last}: {_describe(exc)}") from None
        return [
            TransferLog(
                tx_hash=_hex(entry["transactionHash"]), log_index=entry["logIndex"],
                block_number=entry["blockNumber"], block_hash=_hex(entry["blockHash"]),
                to="0x" + bytes(entry["topics"][2])[-20:].hex(), amount=int.from_bytes(bytes(entry["data"]), "big"),
            )
            for entry in logs
            if not entry.get("removed")
        ]
