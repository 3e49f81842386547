#!/usr/bin/env python3
"""PostgreSQL write ceilings measured with an independent client (psql/libpq, which sets
TCP_NODELAY on every TCP connection), for the same rows tributary stores.

    benches/pg_ceiling.py [--n 100000] [--page 100] [--from-sqlite tributary.db]
                          [--server postgres://postgres@127.0.0.1:5432/postgres]

Rows are the `records` rows of a tributary SQLite database (`--from-sqlite`, e.g. the one
a `tributary sync` of the peers' fake Jira left) or, without it, N synthetic rows of seven
mapped fields. A scratch database gets a table shaped like `records` (jsonb data, primary
key, timestamps), then, over TCP to 127.0.0.1:
- batched: one `BEGIN; INSERT … VALUES (page rows); COMMIT;` per page, one psql session;
- copy: one `COPY … FROM STDIN` of every row.
Prints one JSON line per case with rows/s. The database is dropped at the end.
"""
import argparse, hashlib, json, os, sqlite3, subprocess, sys, tempfile, time, uuid


def rows_from_sqlite(path, n):
    con = sqlite3.connect(path)
    out = con.execute("SELECT external_id, data, content_hash FROM records LIMIT ?", (n,)).fetchall()
    con.close()
    return out


def synthetic_rows(n):
    out = []
    for i in range(n):
        data = json.dumps({"key": "PRJ-%d" % i, "summary": "Issue number %d needs attention" % i,
                           "status": ["To Do", "In Progress", "Done"][i % 3], "assignee": "user%d@example.com" % (i % 50),
                           "priority": ["Low", "Medium", "High"][i % 3], "created_at": "2026-01-01T00:00:00Z",
                           "updated_at": "2026-11-01T12:00:%02dZ" % (i % 60)})
        out.append(("1%07d" % i, data, hashlib.sha256(data.encode()).hexdigest()))
    return out


def lit(s):
    return "'" + s.replace("'", "''") + "'"


def psql(url, script_path):
    t0 = time.monotonic()
    subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", url, "-f", script_path], check=True,
                   stdout=subprocess.DEVNULL)
    return time.monotonic() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100000)
    ap.add_argument("--page", type=int, default=100)
    ap.add_argument("--from-sqlite")
    ap.add_argument("--server", default="postgres://postgres@127.0.0.1:5432/postgres")
    a = ap.parse_args()
    rows = rows_from_sqlite(a.from_sqlite, a.n) if a.from_sqlite else synthetic_rows(a.n)
    if "127.0.0.1" not in a.server and "localhost" not in a.server:
        sys.exit("the server must be reached over TCP on loopback (127.0.0.1)")
    name = "ceiling_%s" % uuid.uuid4().hex[:12]
    subprocess.run(["psql", "-X", "-q", a.server, "-c", "CREATE DATABASE %s" % name], check=True)
    url = a.server.rsplit("/", 1)[0] + "/" + name
    table = ("CREATE TABLE records (tenant_id TEXT NOT NULL, entity TEXT NOT NULL, provider TEXT NOT NULL, "
             "external_id TEXT NOT NULL, data JSONB NOT NULL, content_hash TEXT NOT NULL, first_seen TIMESTAMPTZ NOT NULL, "
             "last_synced TIMESTAMPTZ NOT NULL, deleted_at TIMESTAMPTZ, PRIMARY KEY (tenant_id, entity, provider, external_id));")
    try:
        with tempfile.TemporaryDirectory() as d:
            results = []
            for case in ("batched", "copy"):
                subprocess.run(["psql", "-X", "-q", url, "-c", "DROP TABLE IF EXISTS records; " + table], check=True)
                path = os.path.join(d, case + ".sql")
                with open(path, "w") as f:
                    if case == "batched":
                        for i in range(0, len(rows), a.page):
                            page = rows[i:i + a.page]
                            f.write("BEGIN;\nINSERT INTO records (tenant_id, entity, provider, external_id, data, content_hash, first_seen, last_synced) VALUES\n")
                            f.write(",\n".join("('t','issue','jira',%s,%s::jsonb,%s,now(),now())" % (lit(e), lit(dt), lit(h)) for e, dt, h in page))
                            f.write(";\nCOMMIT;\n")
                    else:
                        f.write("COPY records (tenant_id, entity, provider, external_id, data, content_hash, first_seen, last_synced) FROM STDIN;\n")
                        esc = lambda s: s.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
                        for e, dt, h in rows:
                            f.write("t\tissue\tjira\t%s\t%s\t%s\t2026-12-07 00:00:00+00\t2026-12-07 00:00:00+00\n" % (esc(e), esc(dt), esc(h)))
                        f.write("\\.\n")
                secs = psql(url, path)
                count = int(subprocess.run(["psql", "-X", "-qAt", url, "-c", "SELECT count(*) FROM records"], check=True,
                                           capture_output=True, text=True).stdout.strip())
                r = {"case": case, "rows": count, "page": a.page if case == "batched" else None, "secs": round(secs, 3),
                     "rows_per_s": round(count / secs)}
                print(json.dumps(r), flush=True)
                results.append(r)
    finally:
        subprocess.run(["psql", "-X", "-q", a.server, "-c", "DROP DATABASE IF EXISTS %s" % name], check=False)


if __name__ == "__main__":
    main()
