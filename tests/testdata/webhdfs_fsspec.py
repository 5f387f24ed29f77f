# Drives cairn's WebHDFS with Python fsspec's WebHDFS filesystem (Debian
# python3-fsspec), as tests/webhdfs_test.go asks:
#   webhdfs_fsspec.py HOST PORT HTTPS(0|1) TOKEN USER DIR write|delete
# "write" makes DIR, writes, lists, stats, reads, reads a range, appends
# and renames a.txt to b.txt, and prints what it saw as JSON; "delete"
# removes DIR.
import json
import sys

import urllib3

from fsspec.implementations.webhdfs import WebHDFS

host, port, https, token, user, d, mode = sys.argv[1:8]
kw = {"host": host, "port": int(port), "use_https": https == "1"}
if token:
    kw["token"] = token
if user:
    kw["user"] = user
fs = WebHDFS(**kw)
# cairn's daemons' certificates name no host; the cluster CA is not the
# system's: this script does not check the server (as curl -k).
fs.session.verify = False
fs.session.trust_env = False
urllib3.disable_warnings()
if mode == "delete":
    fs.rm(d, recursive=True)
    print(json.dumps({"exists": fs.exists(d)}))
    assert not fs.exists(d)
    sys.exit(0)
fs.makedirs(d, exist_ok=True)
with fs.open(d + "/a.txt", "wb") as f:
    f.write(b"hello from fsspec\n")
names = sorted(p.rsplit("/", 1)[-1] for p in fs.ls(d, detail=False))
info = fs.info(d + "/a.txt")
data = fs.cat_file(d + "/a.txt")
part = fs.cat_file(d + "/a.txt", start=6, end=10)
with fs.open(d + "/a.txt", "ab") as f:
    f.write(b"appended\n")
fs.mv(d + "/a.txt", d + "/b.txt")
after = fs.cat_file(d + "/b.txt")
print(json.dumps({"names": names, "size": info["size"], "type": info["type"], "data": data.decode(),
                  "part": part.decode(), "after": after.decode(), "renamed": sorted(p.rsplit("/", 1)[-1] for p in fs.ls(d, detail=False))}))
