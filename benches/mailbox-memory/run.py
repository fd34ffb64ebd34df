# Memory of offline users' mailboxes: N users x M messages pushed over REST (1000 users per
# push) to users with no connection; the server's RSS before and 1 s after, and one user's
# mailbox as GET /api/v1/users/{id}/unread shows it (a check that the messages are kept).
# Usage: python3 benches/mailbox-memory/run.py target/release/wsgate disk|memory N M
# (BENCHMARKS.md, "Offline mailboxes in memory and on disk").
import json, shutil, socket, subprocess, sys, tempfile, time, urllib.request
bin_, store, n, m = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
data = tempfile.mkdtemp()
p = subprocess.Popen([bin_, "--host", "127.0.0.1", "--port", str(port), "--jwt-secret", "x",
    "--api-keys", "bench-key-1", "--store", store, "--data-dir", data + "/d", "--user-stream-size", "100",
    "--user-stream-bytes", "1000000"], stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
base = f"http://127.0.0.1:{port}"
for _ in range(100):
    try: urllib.request.urlopen(base + "/healthz"); break
    except OSError: time.sleep(0.1)
def rss():
    for l in open(f"/proc/{p.pid}/status"):
        if l.startswith("VmRSS"): return int(l.split()[1])
def post(path, body):
    r = urllib.request.Request(base + path, json.dumps(body).encode(), {"Content-Type": "application/json", "Authorization": "Bearer bench-key-1"})
    return json.loads(urllib.request.urlopen(r).read())
time.sleep(0.5)
before = rss()
payload = {"body": "x" * 100}
users = [f"user-{i}" for i in range(n)]
t = time.time()
for j in range(m):
    for k in range(0, n, 1000):
        post("/api/v1/push/users", {"userIds": users[k:k+1000], "event": "notification", "data": payload})
took = time.time() - t
time.sleep(1.0)
after = rss()
unread = json.loads(urllib.request.urlopen(urllib.request.Request(base + "/api/v1/users/user-7/unread", headers={"Authorization": "Bearer bench-key-1"})).read())
p.terminate(); p.wait(); shutil.rmtree(data, ignore_errors=True)
print(json.dumps({"store": store, "users": n, "per_user": m, "messages": n*m, "rss_before_kib": before, "rss_after_kib": after,
  "bytes_per_message": round((after-before)*1024/(n*m), 1), "push_seconds": round(took, 1), "user7_mailbox": unread.get("mailbox")}))
