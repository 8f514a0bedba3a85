"""A fake TRON full node + TronGrid v1 API on a loopback port, scriptable per test.

No TRON node can run here, so this serves the documented wire formats the watcher reads:
- java-tron HTTP API (POST, JSON body): `/walletsolidity/getnowblock`, `/walletsolidity/getblock`
  (`{"id_or_num": "<n>", "detail": false}` → header only, `{}` when not solidified),
  `/walletsolidity/gettransactioninfobyid` (`{"value": "<txid>"}` → TransactionInfo: `blockNumber`,
  `blockTimeStamp`, `receipt.result`, `log[]` with the contract address as 20-byte hex without 41
  (base58 of those 20 bytes when the request says visible=true, as java-tron does), topics and data
  as hex without 0x; `{}` until the transaction's block is solidified).
- TronGrid `GET /v1/accounts/{address}/transactions/trc20` with only_confirmed, only_to,
  contract_address, min_timestamp, max_timestamp (inclusive), order_by
  (`block_timestamp,asc|desc`, default desc), limit (default 20, max 200) and fingerprint; answers
  `{"data": [...], "success": true, "meta": {"at", "page_size", "fingerprint", "links": {"next"}}}`,
  `fingerprint` only when a further page exists.

Blocks are virtual: block n has timestamp GENESIS_MS + 3000·n and a blockID that starts with n in hex
(as TRON's do). The test moves `head` and `solid` and adds transactions; `fail(...)` makes the next
requests to a path answer an HTTP error first (429 with Retry-After, 5xx), `lagging` hides receipts
the way a solidity node that is behind does, and `requests` records every request (path, headers).
"""
from __future__ import annotations

import hashlib
import json
import secrets
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

import base58

GENESIS_MS = 1_700_000_000_000
BLOCK_MS = 3000
TRANSFER_TOPIC = "ddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
USDT = "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"
SENDER = "TJmmqjb1DK9TTZbQXzRQ2AuA94z4gKAPFh"


def hex20(address: str) -> str:
    """A base58 TRON address as the 20-byte hex TVM logs use (no 41 prefix)."""
    return base58.b58decode_check(address)[1:].hex()


def address(byte: int) -> str:
    """A valid base58 TRON address made of one repeated byte (contracts and wallets of tests)."""
    return base58.b58encode_check(bytes([0x41] + [byte] * 20)).decode()


@dataclass
class Log:
    """One event in a transaction's receipt; a TRC20 Transfer unless topics are given."""

    to: str
    amount: int
    contract: str = USDT
    sender: str = SENDER
    symbol: str = "USDT"

    def wire(self, visible: bool) -> dict:
        contract = base58.b58encode_check(bytes.fromhex(hex20(self.contract))).decode() if visible \
            else hex20(self.contract)  # java-tron's visible=true prints the 20 bytes in base58
        return {
            "address": contract,
            "topics": [TRANSFER_TOPIC, "0" * 24 + hex20(self.sender), "0" * 24 + hex20(self.to)],
            "data": f"{self.amount:064x}",
        }


@dataclass
class Transaction:
    txid: str
    block: int
    logs: list[Log]
    result: str = "SUCCESS"  # receipt.result: SUCCESS, REVERT, OUT_OF_ENERGY, …


@dataclass
class Failure:
    path: str
    status: int
    times: int
    retry_after: str | None


@dataclass
class FakeTron:
    url: str = ""
    head: int = 0
    solid: int = 0
    transactions: dict[str, Transaction] = field(default_factory=dict)
    requests: list[tuple[str, dict]] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    lagging: set[str] = field(default_factory=set)  # txids whose solidified receipt the node "has not yet"
    _pages: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    # ---- scripting
    def chain(self, head: int, solid: int) -> None:
        with self.lock:
            self.head, self.solid = head, solid

    def send(self, block: int, *logs: Log, result: str = "SUCCESS", txid: str | None = None) -> str:
        txid = txid or secrets.token_hex(32)
        with self.lock:
            self.transactions[txid] = Transaction(txid, block, list(logs), result)
        return txid

    def fail(self, path: str, status: int, times: int = 1, retry_after: str | None = None) -> None:
        with self.lock:
            self.failures.append(Failure(path, status, times, retry_after))

    def paths(self, prefix: str) -> list[str]:
        return [path for path, _headers in self.requests if path.startswith(prefix)]

    # ---- wire formats
    @staticmethod
    def timestamp(number: int) -> int:
        return GENESIS_MS + number * BLOCK_MS

    @staticmethod
    def block_id(number: int) -> str:
        return f"{number:016x}" + hashlib.sha256(str(number).encode()).hexdigest()[16:]

    def block(self, number: int) -> dict:
        return {
            "blockID": self.block_id(number),
            "block_header": {
                "raw_data": {
                    "number": number,
                    "txTrieRoot": "0" * 64,
                    "witness_address": "41" + "ab" * 20,
                    "parentHash": self.block_id(number - 1),
                    "version": 31,
                    "timestamp": self.timestamp(number),
                },
                "witness_signature": "cd" * 65,
            },
        }

    def transaction_info(self, txid: str, visible: bool) -> dict:
        transaction = self.transactions.get(txid)
        if transaction is None or transaction.block > self.solid or txid in self.lagging:
            return {}
        info = {
            "id": txid,
            "fee": 13_844_850,
            "blockNumber": transaction.block,
            "blockTimeStamp": self.timestamp(transaction.block),
            "contractResult": ["0" * 63 + "1" if transaction.result == "SUCCESS" else ""],
            "contract_address": (transaction.logs[0].contract if visible else "41" + hex20(transaction.logs[0].contract))
            if transaction.logs else "",
            "receipt": {"energy_usage_total": 64_285, "net_fee": 345_000, "result": transaction.result},
            "log": [log.wire(visible) for log in transaction.logs],
        }
        if transaction.result != "SUCCESS":
            info["result"] = "FAILED"
            info["resMessage"] = "REVERT opcode executed".encode().hex()
        return info

    def trc20_page(self, address: str, query: dict[str, str]) -> dict:
        confirmed = query.get("only_confirmed") == "true"
        items = []
        for transaction in self.transactions.values():
            if transaction.block > self.head:
                continue
            if confirmed and transaction.block > self.solid:
                continue
            stamp = self.timestamp(transaction.block)
            if "min_timestamp" in query and stamp < int(query["min_timestamp"]):
                continue
            if "max_timestamp" in query and stamp > int(query["max_timestamp"]):
                continue
            for log in transaction.logs:
                if query.get("contract_address") not in (None, log.contract):
                    continue
                if log.to != address and log.sender != address:
                    continue
                if query.get("only_to") == "true" and log.to != address:
                    continue
                items.append({
                    "transaction_id": transaction.txid,
                    "token_info": {"symbol": log.symbol, "address": log.contract, "decimals": 6,
                                   "name": "Tether USD"},
                    "block_timestamp": stamp,
                    "from": log.sender,
                    "to": log.to,
                    "type": "Transfer",
                    "value": str(log.amount),
                })
        descending = query.get("order_by", "block_timestamp,desc").endswith(",desc")
        items.sort(key=lambda item: item["block_timestamp"], reverse=descending)
        limit = min(int(query.get("limit", 20)), 200)
        offset = self._pages.pop(query["fingerprint"]) if "fingerprint" in query else 0
        page = items[offset:offset + limit]
        meta = {"at": self.timestamp(self.head), "page_size": len(page)}
        if offset + limit < len(items):
            fingerprint = secrets.token_urlsafe(24)
            self._pages[fingerprint] = offset + limit
            meta["fingerprint"] = fingerprint
            meta["links"] = {"next": f"{self.url}/v1/accounts/{address}/transactions/trc20?"
                                     + urlencode({**query, "fingerprint": fingerprint})}
        return {"data": page, "success": True, "meta": meta}

    def answer(self, method: str, path: str, query: dict[str, str], body: dict) -> tuple[int, dict, dict]:
        """(status, headers, JSON) for one request."""
        with self.lock:
            for failure in self.failures:
                if failure.times and path.startswith(failure.path):
                    failure.times -= 1
                    headers = {"Retry-After": failure.retry_after} if failure.retry_after is not None else {}
                    return failure.status, headers, {"Error": "The key exceeds the frequency limit(15), "
                                                              "and the query server is suspended for 30s"}
            if method == "POST" and path == "/walletsolidity/getnowblock":
                return 200, {}, self.block(self.solid)
            if method == "POST" and path == "/walletsolidity/getblock":
                number = int(body.get("id_or_num", self.solid))
                return 200, {}, self.block(number) if 0 <= number <= self.solid else {}
            if method == "POST" and path == "/walletsolidity/gettransactioninfobyid":
                return 200, {}, self.transaction_info(str(body.get("value", "")), body.get("visible") is True)
            parts = path.strip("/").split("/")
            if method == "GET" and len(parts) == 5 and parts[:2] == ["v1", "accounts"] and \
                    parts[3:] == ["transactions", "trc20"]:
                return 200, {}, self.trc20_page(parts[2], query)
            return 404, {}, {"Error": f"no such endpoint {method} {path}"}


class _Handler(BaseHTTPRequestHandler):
    fake: FakeTron

    def _serve(self, method: str) -> None:
        split = urlsplit(self.path)
        query = {name: values[-1] for name, values in parse_qs(split.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw.strip() else {}
        with self.fake.lock:
            self.fake.requests.append((split.path, dict(self.headers)))
        status, headers, payload = self.fake.answer(method, split.path, query, body)
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._serve("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._serve("POST")

    def log_message(self, *_args) -> None:
        pass


def serve() -> tuple[FakeTron, ThreadingHTTPServer]:
    """Start a fake on a free loopback port; the caller shuts the server down."""
    fake = FakeTron()
    handler = type("Handler", (_Handler,), {"fake": fake})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return fake, server
