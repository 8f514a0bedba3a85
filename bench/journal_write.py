#!/usr/bin/env python3
"""What journaling a finished request costs the hot path, per record: today's way (one write(2)
of one line to the journal file per record, lua/tollgate/journal.lua, and one "sent" line per
settlement batch) against the way before it (an rpush of the record to a shared-dict list per
record; per batch, one write(2) of all its lines and the list's delete), in the same run.

nginx's own LuaJIT runs both in init_by_lua (no server, no request), on a realistic packed record,
in batches of --batch records, repeated --rounds times alternating the two; printed: CPU µs a
record (user + system, os.clock) of each, medians over the rounds, and the difference. The journal
file is written under --dir (default a temporary directory: put it on the disk TOLLGATE_HOME is on).
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
MODULES = Path("/usr/lib/nginx/modules")

# A usage record as record.lua packs one (a non-streamed chat completion of sandbox-chat).
RECORD_VALUES = (
    "c19f7c28f07949340000000000000001", "1796283900617", "2", "2", "sandbox-chat", "sandbox-chat",
    "sandbox", "1", "chat.completions", "0", "200", "provider", "25", "0", "0", "0", "24", "0", "18150",
    "3", "3", "vm-48b36a8b-0119", "21000", "0", "sandbox-chat", "1", "1", "18150", "1", "", "", "")
RECORD = "\t".join(RECORD_VALUES)

CONF = """\
load_module {modules}/ndk_http_module.so;
load_module {modules}/ngx_http_lua_module.so;
daemon off;
master_process off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log;
events {{}}
http {{
    lua_package_path "{repo}/lua/?.lua;/usr/share/lua/5.1/?.lua;;";
    lua_shared_dict bench_journal 8m;
    init_by_lua_block {{
        local ok, err = pcall(function()
            require("tollgate.config").load("{tmp}/tollgate.json")
            require("tollgate.node").id = "bench-node"
            local journal = require "tollgate.journal"
            local dict = ngx.shared.bench_journal
            local concat = table.concat
            local packed, batch, rounds, batches = {record}, {batch}, {rounds}, {batches}
            local old_file = assert(io.open("{dir}/old.tsv", "a"))
            old_file:setvbuf("no")

            local function before(key, records)  -- the shared dict, then one write a batch
                for i = 1, batch do
                    records[i] = packed
                    dict:rpush(key, packed)
                end
                local prefix = key .. "\\t"
                old_file:write(prefix .. concat(records, "\\n" .. prefix, 1, batch) .. "\\n")
                dict:delete(key)
            end

            local function now(key, records)  -- one write a record, one "sent" line a batch
                for i = 1, batch do
                    records[i] = packed
                    journal.record(key, packed)
                end
                journal.sent(key)
            end

            local function per_record(way)
                local records = {{}}
                local started = os.clock()
                for b = 1, batches do
                    way(journal.key(b % 8, "bench-node:1:1796283900:" .. b), records)
                end
                return (os.clock() - started) * 1e6 / (batches * batch)
            end

            local results = {{}}
            for r = 1, rounds do
                results[#results + 1] = string.format("%.3f %.3f", per_record(before), per_record(now))
            end
            io.stdout:write(concat(results, "\\n"), "\\n")
        end)
        if not ok then io.stderr:write("bench: ", tostring(err), "\\n") end
        io.stdout:flush()
        os.exit(ok and 0 or 1)
    }}
}}
"""


def median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=50, help="records a settlement batch (default 50)")
    parser.add_argument("--records", type=int, default=100_000, help="records a round and way (default 100,000)")
    parser.add_argument("--rounds", type=int, default=7, help="rounds, alternating the two ways (default 7)")
    parser.add_argument("--dir", type=Path, help="where the journal files go (default: a temporary directory)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tollgate-journal-bench-") as tmp:
        directory = args.dir or Path(tmp)
        directory.mkdir(parents=True, exist_ok=True)
        (Path(tmp) / "tollgate.json").write_text(json.dumps({"journal_dir": str(directory)}))
        conf = Path(tmp) / "nginx.conf"
        conf.write_text(CONF.format(modules=MODULES, tmp=tmp, repo=REPO, dir=directory, record=json.dumps(RECORD),
                                    batch=args.batch, rounds=args.rounds, batches=args.records // args.batch))
        proc = subprocess.run([NGINX, "-p", tmp, "-c", str(conf)], capture_output=True, text=True,
                              timeout=1800, check=False)
        if proc.returncode != 0:
            print(proc.stderr, file=sys.stderr)
            return 1
        rounds = [tuple(map(float, line.split())) for line in proc.stdout.split("\n") if line.strip()]
    before, now = median([r[0] for r in rounds]), median([r[1] for r in rounds])
    print(f"journal CPU per record, batches of {args.batch}, median of {len(rounds)} rounds of {args.records:,}:")
    print(f"  before (shared-dict rpush, one write a batch): {before:.2f} µs")
    print(f"  now    (one write(2) a record, one a batch):   {now:.2f} µs")
    print(f"  difference: {now - before:+.2f} µs a record")
    return 0


if __name__ == "__main__":
    sys.exit(main())
