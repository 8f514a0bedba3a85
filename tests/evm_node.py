"""A real local EVM node for the deposit tests: anvil (npm @foundry-rs/anvil, installed from
tests/evm on first use, helpers.npm_binary), the test USDT deployed on it, and an RPC proxy that plays a
provider's failures (429s, refused ranges, no `finalized` tag) in front of it."""
from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from helpers import npm_binary
from web3 import Web3

EVM_DIR = Path(__file__).resolve().parent / "evm"
ARTIFACT = json.loads((Path(__file__).resolve().parent / "fixtures" / "evm" / "TestUSDT.json").read_text())
# anvil finalizes two epochs behind the head: with 2 slots an epoch, `finalized` = latest − 4.
SLOTS_IN_AN_EPOCH = 2
FINALITY_LAG = 2 * SLOTS_IN_AN_EPOCH


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class AnvilNode:
    """anvil on a free loopback port, mining a block per transaction (and on demand)."""

    def __init__(self):
        self.url = f"http://127.0.0.1:{_free_port()}"
        port = self.url.rsplit(":", 1)[1]
        self.process = subprocess.Popen(
            [str(npm_binary(EVM_DIR, ".bin/anvil")), "--host", "127.0.0.1", "--port", port, "--silent",
             "--slots-in-an-epoch", str(SLOTS_IN_AN_EPOCH)],
            stdout=subprocess.DEVNULL, start_new_session=True,
        )
        self.web3 = Web3(Web3.HTTPProvider(self.url))
        deadline = time.monotonic() + 30
        while not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"anvil did not start at {self.url}")
            time.sleep(0.05)
        self.owner = self.web3.eth.accounts[0]

    def _answers(self) -> bool:
        try:
            return self.web3.is_connected()
        except OSError:
            return False

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def rpc(self, method: str, *params):
        return self.web3.provider.make_request(method, list(params))["result"]

    def head(self) -> int:
        return self.web3.eth.block_number

    def mine(self, blocks: int) -> None:
        self.rpc("anvil_mine", hex(blocks))

    def reorg(self, depth: int) -> None:
        """Replace the newest `depth` blocks by empty ones (the chain keeps its height)."""
        self.rpc("anvil_reorg", depth, [])

    def deploy(self, decimals: int) -> str:
        """A fresh TestUSDT ("Tether USD", "USDT") whose whole supply the owner holds."""
        factory = self.web3.eth.contract(abi=ARTIFACT["abi"], bytecode=ARTIFACT["bytecode"])
        tx = factory.constructor(decimals, 10**40).transact({"from": self.owner})
        return self.web3.eth.wait_for_transaction_receipt(tx)["contractAddress"]

    def transfer(self, token: str, *payments: tuple[str, int]):
        """One transaction from the owner: transfer() for one payment, transferMany() for several;
        its receipt. Gas is fixed, so the same call at the same nonce is the same transaction (the
        same hash), as when a re-org's transaction is mined again."""
        contract = self.web3.eth.contract(address=token, abi=ARTIFACT["abi"])
        if len(payments) == 1:
            call = contract.functions.transfer(*payments[0])
        else:
            call = contract.functions.transferMany([to for to, _ in payments], [amount for _, amount in payments])
        tx = call.transact({"from": self.owner, "gas": 500_000, "gasPrice": 10**10})
        return self.web3.eth.wait_for_transaction_receipt(tx)


Rule = Callable[[str, list], "tuple[int, dict, dict | None] | None"]


class RpcProxy:
    """An HTTP JSON-RPC provider stand-in in front of the node: `rule(method, params)` may answer a
    call itself with (HTTP status, headers, JSON-RPC error or None); otherwise it is forwarded.
    `calls` lists every (method, params, answered by the proxy) in order."""

    def __init__(self, upstream: str, rule: Rule, path: str = "/"):
        self.calls: list[tuple[str, list, bool]] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = json.loads(body)
                answer = rule(request["method"], request["params"])
                proxy.calls.append((request["method"], request["params"], answer is not None))
                if answer is None:
                    with urllib.request.urlopen(urllib.request.Request(
                            upstream, body, {"Content-Type": "application/json"})) as response:
                        status, headers, payload = 200, {}, response.read()
                else:
                    status, headers, error = answer
                    payload = json.dumps({"jsonrpc": "2.0", "id": request["id"], "error": error} if error else
                                         {"error": "rate limited"}).encode()
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{path}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def log_ranges(self) -> list[tuple[int, int]]:
        """The (fromBlock, toBlock) of every eth_getLogs the node answered."""
        return [(int(params[0]["fromBlock"], 16), int(params[0]["toBlock"], 16))
                for method, params, refused in self.calls if method == "eth_getLogs" and not refused]
