# Usage: python3 benches/stream_rate.py HOST:PORT SECONDS (a gateway serving benches/stream_rate.toml).
# Counts WatchEvent messages per second on one stream of each protocol (gRPC-Web over HTTP/1.1,
# Connect over HTTP/1.1) for a fixed time, against a gateway whose heartbeats come every 1 ms.
import json, struct, subprocess, sys, time, base64, urllib.request
addr = sys.argv[1]
seconds = float(sys.argv[2])
req = urllib.request.Request(f"http://{addr}/alibabacloud.cs.v20151215.ContainerService/CreateCluster",
    data=json.dumps({"name": "rate", "region_id": "cn-hangzhou"}).encode(), headers={"content-type": "application/json"})
task = json.load(urllib.request.urlopen(req))["task_id"]
def run(content_type, body):
    p = subprocess.Popen(["curl", "-sN", "--http1.1", "--max-time", str(seconds), "-H", f"content-type: {content_type}",
        "--data-binary", "@-", f"http://{addr}/ackgateway.v1.WatchService/WatchTask"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    p.stdin.write(body); p.stdin.close()
    n = 0; started = time.time()
    buf = b""
    while True:
        chunk = p.stdout.read1(65536)
        if not chunk: break
        buf += chunk
        while len(buf) >= 5:
            ln = struct.unpack(">I", buf[1:5])[0]
            if len(buf) < 5 + ln: break
            n += 1; buf = buf[5 + ln:]
    return n / (time.time() - started)
proto = bytes([0x0a, len(task)]) + task.encode()
grpcweb = run("application/grpc-web+proto", b"\0" + struct.pack(">I", len(proto)) + proto)
j = json.dumps({"task_id": task}).encode()
connect = run("application/connect+json", b"\0" + struct.pack(">I", len(j)) + j)
print(f"messages/s on one stream over HTTP/1.1 ({seconds:.0f} s each): gRPC-Web (binary) {grpcweb:.0f}, Connect (JSON) {connect:.0f}")
