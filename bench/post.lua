-- wrk script shared by every scenario: POST the JSON body with the headers that bench/run.py
-- puts in the environment (BENCH_BODY; BENCH_HEADERS as "Name: value" lines).
wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY")
wrk.headers["Content-Type"] = "application/json"
for name, value in os.getenv("BENCH_HEADERS"):gmatch("([^:\n]+):%s*([^\n]*)") do
    wrk.headers[name] = value
end
