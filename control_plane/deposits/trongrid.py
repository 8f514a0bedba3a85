"""HTTP access to a TRON node and TronGrid's v1 API, retried with backoff.

One `requests` session (that of tronpy's HTTPProvider, pointed at TOLLGATE_TRON_URL) carries every
call, so the TronGrid key (TOLLGATE_TRON_API_KEY) is set once, as the `TRON-PRO-API-KEY` header,
and never appears in a URL or a log line. tronpy would otherwise send its own shared keys to hosts
named *trongrid*; we turn that off and send the operator's key, or none.

HTTP 429, 403 (TronGrid's answer to a client over its rate limit: suspended for 30 s), 5xx and
transport failures are retried with exponential backoff (or the server's Retry-After), then
reported as TronUnavailable; nothing is skipped either way, the caller simply has not got its
answer. Other errors are TronApiError.
"""
from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import requests

from ..settings import Settings
from . import backoff

log = logging.getLogger(__name__)

TIMEOUT_SECONDS = 20.0
MAX_ATTEMPTS = 8
FIRST_DELAY_SECONDS = 0.25
MAX_DELAY_SECONDS = 30.0
RETRY_STATUSES = frozenset({403, 408, 429, 500, 502, 503, 504})

T = TypeVar("T")


class TronApiError(RuntimeError):
    """The node answered something retrying will not fix."""


class TronUnavailable(RuntimeError):
    """The node kept failing (rate limit, 5xx, network) through every retry."""


@dataclass(frozen=True)
class BlockHeader:
    number: int
    block_id: str
    timestamp: int  # ms since the epoch


def _header(block: dict) -> BlockHeader:
    raw = block["block_header"]["raw_data"]
    return BlockHeader(number=int(raw["number"]), block_id=block["blockID"], timestamp=int(raw["timestamp"]))


def _retry_after(response: requests.Response, default: float) -> float:
    value = response.headers.get("Retry-After", "")
    return min(float(value), MAX_DELAY_SECONDS) if value.isdigit() else default


class TronGrid:
    """The calls the TRON watcher makes; each returns the node's answer or raises."""

    def __init__(self, settings: Settings):
        from tronpy.providers import (
            HTTPProvider,  # imported here: only watchers need tronpy
        )

        provider = HTTPProvider(settings.tron_url + "/", timeout=TIMEOUT_SECONDS)
        provider.use_api_key = False
        if settings.tron_api_key:
            provider.sess.headers["TRON-PRO-API-KEY"] = settings.tron_api_key
        self._provider = provider
        self._url = settings.tron_url
        self._page_size = settings.tron_page_size
        self._headers: dict[int, BlockHeader] = {}  # solidified blocks never change

    def solid_head(self) -> BlockHeader:
        """The newest solidified (irreversible) block."""
        header = _header(self._post("walletsolidity/getnowblock", {}))
        self._headers[header.number] = header
        return header

    def solid_block(self, number: int) -> BlockHeader:
        if number not in self._headers:
            block = self._post("walletsolidity/getblock", {"id_or_num": str(number), "detail": False})
            if not block:
                raise TronApiError(f"block {number} is not solidified on the node")
            self._headers[number] = _header(block)
        return self._headers[number]

    def solid_transaction_info(self, txid: str) -> dict | None:
        """The transaction's receipt once its block is solidified; None before (or if unknown).

        Asked without `visible`: java-tron then prints each log's contract address as documented,
        20-byte hex without the 41 prefix; with visible=true (what tronpy's
        get_solid_transaction_info sends) it prints those 20 bytes in base58, which is no address.
        """
        return self._post("walletsolidity/gettransactioninfobyid", {"value": txid}) or None

    def incoming_trc20(self, address: str, contract: str, min_timestamp: int, max_timestamp: int) -> Iterator[dict]:
        """TronGrid's TRC20 transfers to `address` of `contract` in the timestamp window (confirmed or
        not: solidification is checked on the receipt), oldest first, every page."""
        url = f"{self._url}/v1/accounts/{address}/transactions/trc20"
        params = {"only_to": "true", "contract_address": contract, "min_timestamp": min_timestamp,
                  "max_timestamp": max_timestamp, "order_by": "block_timestamp,asc", "limit": self._page_size}
        while True:
            page = self._call(f"TronGrid TRC20 transfers to {address}", lambda: self._get(url, params))
            if page.get("success") is not True:
                raise TronApiError(f"TronGrid TRC20 transfers to {address}: {page.get('error') or page}")
            yield from page.get("data") or []
            fingerprint = (page.get("meta") or {}).get("fingerprint")
            if not fingerprint:
                return
            params = {**params, "fingerprint": fingerprint}

    def _post(self, method: str, body: dict) -> dict:
        """A java-tron API call; its errors come back as HTTP 200 with {"Error": …}."""
        answer = self._call(f"{method} {body}", lambda: self._provider.make_request(method, body))
        if "Error" in answer:
            raise TronApiError(f"{method}: {answer['Error']}")
        return answer

    def _get(self, url: str, params: dict) -> dict:
        response = self._provider.sess.get(url, params=params, timeout=TIMEOUT_SECONDS)
        response.raise_for_status()
        return response.json()

    def _call(self, what: str, request: Callable[[], T]) -> T:
        delay = FIRST_DELAY_SECONDS
        for attempt in itertools.count(1):
            try:
                return request()
            except requests.HTTPError as exc:
                status = exc.response.status_code
                if status not in RETRY_STATUSES:
                    raise TronApiError(f"{what}: HTTP {status}") from None
                reason, wait = f"HTTP {status}", _retry_after(exc.response, delay)
            except requests.RequestException as exc:  # connection refused/reset, timeout, bad JSON
                reason, wait = type(exc).__name__, delay
            if attempt == MAX_ATTEMPTS:
                raise TronUnavailable(f"{what}: {reason} after {attempt} attempts")
            log.warning("%s: %s; retrying in %.2f s", what, reason, wait)
            if backoff.pause(wait):
                raise TronUnavailable(f"{what}: {reason}; not retried, the watcher is stopping")
            delay = min(delay * 2, MAX_DELAY_SECONDS)
