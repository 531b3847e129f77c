#!/usr/bin/env python3
"""bench/corpus.py: generated databases of different kinds of data, for
bench/compression.py (issue 18: compression levels must hold on every kind
of data, not on the one web shop database of benchlib.generate_database).

usage: bench/corpus.py [--size-mib 128] [--kinds text,numbers,...]

Each kind is one SQLite database made with Python's sqlite3 module from a
fixed seed, so that two runs (and two machines with the same Python and
zlib) get the same rows. They are kept in BENCH_DIR as corpus-KIND-N.db and
reused, like benchlib.generate_database's: a database is made again only
when it is missing or smaller than 97% of the size asked for.

The kinds, and why each is there:

- text: articles with titles, slugs, authors, tags and bodies of sentences
  drawn from a 6,000-word vocabulary with a Zipf-like distribution, plus
  three indexes. Long-range repetition, the easy case.
- numbers: sensor readings and host metrics (integers, timestamps, REALs on
  a random walk) with a composite index: short rows, 8-byte doubles whose
  low bits are noise, little text.
- tokens: sessions and API keys keyed by UUIDs and SHA-256 hex digests, with
  unique indexes on them: hex and UUID text compresses only by its alphabet
  (about 2x), through Huffman coding rather than matches.
- json: event documents (nested objects, arrays, repeated keys, ids, prices,
  ISO timestamps) with two expression indexes on json_extract().
- blobs: attachments whose BLOBs are already compressed (zlib and gzip
  streams of text, and random bytes standing in for JPEG/PNG/zip): almost
  nothing to gain, so what counts is not to lose and to be fast.
- shop-token: web shop orders like benchlib's, but short rows without free
  text (name, e-mail, amount, time, status) and a random 10-hex-digit token
  in every row, with a unique index on it: issue 18's case ("orders with a
  short random token in each row", where the level table tuned on the web
  shop made 1.042x of gzip -6's archive). Without free text to dilute them,
  the tokens are what libdeflate's faster levels lose most on.
"""
import argparse
import gzip
import hashlib
import json
import os
import random
import sqlite3
import string
import sys
import time
import uuid
import zlib

import benchlib as b

SYLLABLES = ("ka ri to na me so lu pe an er in on el ar us or it es at en st tr pr "
             "ch sh th qu bl gr fl cr ma ne pi ro su va de li mo tu ba ce di fo gu").split()
BASE62 = string.ascii_letters + string.digits


def vocabulary(rng, count=6000):
    """Pseudo-words of 1-4 syllables, with Zipf-like weights (rank ** -1.07),
    so that a few words are frequent and most are rare, as in prose."""
    words = list(b.WORDS)
    seen = set(words)
    while len(words) < count:
        word = "".join(rng.choices(SYLLABLES, k=rng.choice((1, 2, 2, 3, 3, 3, 4))))
        if word not in seen:
            seen.add(word)
            words.append(word)
    rng.shuffle(words)
    weights = [1.0 / (rank + 1) ** 1.07 for rank in range(count)]
    total, cumulative = 0.0, []
    for w in weights:
        total += w
        cumulative.append(total)
    return words, cumulative


class Prose:
    """Sentences of words from a vocabulary, capitalized and punctuated."""

    def __init__(self, rng):
        self.rng = rng
        self.words, self.cumulative = vocabulary(rng)

    def sentence(self):
        words = self.rng.choices(self.words, cum_weights=self.cumulative,
                                 k=self.rng.randint(5, 22))
        if self.rng.random() < 0.3:
            words.insert(self.rng.randint(1, len(words) - 1), str(self.rng.randint(2, 2030)))
        text = " ".join(words)
        return text[0].upper() + text[1:] + self.rng.choice("....!?;")

    def paragraph(self, sentences):
        return " ".join(self.sentence() for _ in range(sentences))

    def words_(self, k):
        return self.rng.choices(self.words, cum_weights=self.cumulative, k=k)


def token(rng, length):
    return "".join(rng.choices(BASE62, k=length))


def hex_digest(rng):
    return f"{rng.getrandbits(256):064x}"


def uuid4(rng):
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def iso(seconds):
    """An ISO 8601 UTC timestamp, `seconds` after 2023-11-14."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(1_700_000_000 + seconds))


# Every generator gets (rng, row number where the batch starts) and returns
# {table: [rows]} for one batch; the schema creates tables and indexes first,
# so that indexes grow as the data does, as in a live database.

def text_schema():
    return ["""CREATE TABLE articles (id INTEGER PRIMARY KEY, slug TEXT NOT NULL, title TEXT NOT NULL,
               author TEXT NOT NULL, created INTEGER NOT NULL, tags TEXT, summary TEXT, body TEXT)""",
            "CREATE UNIQUE INDEX articles_slug ON articles(slug)",
            "CREATE INDEX articles_title ON articles(title)",
            "CREATE INDEX articles_author ON articles(author, created)"]


def text_batch(state, row):
    rng, prose = state["rng"], state["prose"]
    rows = []
    for i in range(2000):
        title_words = prose.words_(rng.randint(3, 9))
        title = " ".join(title_words).capitalize()
        slug = "-".join(title_words)[:60] + f"-{row + i}"
        author = f"{rng.choice(b.FIRST)} {rng.choice(b.LAST)}"
        tags = ",".join(sorted(set(prose.words_(rng.randint(1, 5)))))
        summary = prose.sentence()
        body = "\n\n".join(prose.paragraph(rng.randint(2, 7)) for _ in range(rng.randint(1, 6)))
        rows.append((slug, title, author, 1_600_000_000 + (row + i) * 600 + rng.randint(0, 599),
                     tags, summary, body))
    return {"INSERT INTO articles (slug, title, author, created, tags, summary, body) "
            "VALUES (?,?,?,?,?,?,?)": rows}


def numbers_schema():
    return ["""CREATE TABLE readings (id INTEGER PRIMARY KEY, sensor INTEGER NOT NULL,
               ts INTEGER NOT NULL, value REAL NOT NULL, low REAL, high REAL, quality INTEGER)""",
            "CREATE INDEX readings_sensor_ts ON readings(sensor, ts)",
            """CREATE TABLE metrics (host INTEGER NOT NULL, ts INTEGER NOT NULL, cpu REAL,
               load1 REAL, mem_bytes INTEGER, rx_bytes INTEGER, tx_bytes INTEGER,
               requests INTEGER, p99_ms REAL, PRIMARY KEY (host, ts)) WITHOUT ROWID"""]


def numbers_batch(state, row):
    rng = state["rng"]
    walk = state.setdefault("walk", [rng.uniform(-20, 40) for _ in range(500)])
    counters = state.setdefault("counters", [[0, 0, 0] for _ in range(64)])
    readings, metrics = [], []
    for i in range(20000):
        n = row + i
        sensor = n % 500
        walk[sensor] += rng.gauss(0, 0.25)
        value = walk[sensor]
        # half the sensors report rounded values, half raw floats
        if sensor % 2:
            value = round(value, 2)
        readings.append((sensor, 1_700_000_000 + (n // 500) * 10, value,
                         value - abs(rng.gauss(0, 0.5)), value + abs(rng.gauss(0, 0.5)),
                         rng.choice((0, 0, 0, 0, 1, 2))))
        if i % 4 == 0:
            host = (n // 4) % 64
            c = counters[host]
            c[0] += rng.randint(0, 2_000_000)
            c[1] += rng.randint(0, 9_000_000)
            c[2] += rng.randint(0, 300)
            metrics.append((host, 1_700_000_000 + (n // 256) * 15, round(rng.uniform(0, 100), 1),
                            rng.uniform(0, 8), rng.randint(1 << 28, 1 << 34), c[0], c[1], c[2],
                            rng.lognormvariate(3, 0.6)))
    return {"INSERT INTO readings (sensor, ts, value, low, high, quality) VALUES (?,?,?,?,?,?)":
            readings,
            "INSERT INTO metrics VALUES (?,?,?,?,?,?,?,?,?)": metrics}


def tokens_schema():
    return ["""CREATE TABLE sessions (id TEXT PRIMARY KEY, user_id INTEGER NOT NULL,
               token TEXT NOT NULL, csrf TEXT NOT NULL, created INTEGER NOT NULL,
               expires INTEGER NOT NULL, ip TEXT) WITHOUT ROWID""",
            "CREATE UNIQUE INDEX sessions_token ON sessions(token)",
            "CREATE INDEX sessions_user ON sessions(user_id)",
            """CREATE TABLE api_keys (id INTEGER PRIMARY KEY, key_id TEXT NOT NULL,
               secret_sha256 TEXT NOT NULL, owner TEXT NOT NULL, scope TEXT, created INTEGER)""",
            "CREATE UNIQUE INDEX api_keys_key ON api_keys(key_id)"]


def tokens_batch(state, row):
    rng = state["rng"]
    sessions, keys = [], []
    for i in range(10000):
        created = 1_700_000_000 + (row + i) * 3 + rng.randint(0, 2)
        sessions.append((uuid4(rng), rng.randint(1, 200_000), hex_digest(rng),
                         f"{rng.getrandbits(128):032x}", created, created + 86400 * 30,
                         f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"))
        if i % 3 == 0:
            keys.append(("sk_" + token(rng, 24), hex_digest(rng), uuid4(rng),
                         rng.choice(("read", "write", "admin", "read,write")), created))
    return {"INSERT INTO sessions VALUES (?,?,?,?,?,?,?)": sessions,
            "INSERT INTO api_keys (key_id, secret_sha256, owner, scope, created) "
            "VALUES (?,?,?,?,?)": keys}


EVENT_TYPES = ("page_view", "add_to_cart", "checkout", "login", "logout", "search", "signup",
               "payment_failed", "refund", "review")
AGENTS = ("Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0",
          "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/119.0.0.0 Safari/537.36",
          "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) Mobile/15E148",
          "okhttp/4.12.0", "python-requests/2.31.0")


def json_schema():
    return ["CREATE TABLE events (id INTEGER PRIMARY KEY, doc TEXT NOT NULL)",
            "CREATE INDEX events_type ON events(json_extract(doc, '$.type'), json_extract(doc, '$.ts'))",
            "CREATE INDEX events_user ON events(json_extract(doc, '$.user.id'))"]


def json_batch(state, row):
    rng, prose = state["rng"], state["prose"]
    rows = []
    for i in range(5000):
        n = row + i
        first, last = rng.choice(b.FIRST), rng.choice(b.LAST)
        kind = rng.choice(EVENT_TYPES)
        doc = {"type": kind, "ts": iso(n * 2 + rng.randint(0, 1)), "id": uuid4(rng),
               "user": {"id": rng.randint(1, 500_000), "name": f"{first} {last}",
                        "email": f"{first}.{last}{rng.randint(1, 9999)}@example.com",
                        "locale": rng.choice(("de-DE", "en-GB", "fr-FR", "es-ES", "it-IT"))},
               "context": {"ip": f"192.168.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
                           "user_agent": rng.choice(AGENTS),
                           "page": "/" + "/".join(prose.words_(rng.randint(1, 3)))}}
        if kind in ("add_to_cart", "checkout", "refund"):
            doc["items"] = [{"sku": f"SKU-{rng.randint(10000, 99999)}", "qty": rng.randint(1, 5),
                             "price": round(rng.uniform(1, 500), 2),
                             "name": " ".join(prose.words_(rng.randint(2, 4)))}
                            for _ in range(rng.randint(1, 6))]
            doc["total"] = round(sum(it["price"] * it["qty"] for it in doc["items"]), 2)
            doc["currency"] = "EUR"
        if kind == "search":
            doc["query"] = " ".join(prose.words_(rng.randint(1, 4)))
            doc["results"] = rng.randint(0, 500)
        if kind == "review":
            doc["rating"] = rng.randint(1, 5)
            doc["text"] = prose.paragraph(rng.randint(1, 4))
        if rng.random() < 0.4:
            doc["experiments"] = {f"exp_{rng.randint(1, 40)}": rng.choice(("a", "b", "control"))
                                  for _ in range(rng.randint(1, 4))}
        rows.append((json.dumps(doc, separators=(",", ":")),))
    return {"INSERT INTO events (doc) VALUES (?)": rows}


def blobs_schema():
    return ["""CREATE TABLE attachments (id INTEGER PRIMARY KEY, name TEXT NOT NULL, mime TEXT NOT NULL,
               created INTEGER NOT NULL, sha256 TEXT NOT NULL, data BLOB NOT NULL)""",
            "CREATE INDEX attachments_name ON attachments(name)",
            "CREATE UNIQUE INDEX attachments_sha256 ON attachments(sha256)"]


def blobs_batch(state, row):
    rng, prose = state["rng"], state["prose"]
    rows = []
    for i in range(200):
        pick = rng.random()
        if pick < 0.4:  # a zlib stream, as an application would store a compressed document
            text = prose.paragraph(rng.randint(20, 300)).encode()
            data, mime, ext = zlib.compress(text, 6), "application/zlib", "z"
        elif pick < 0.6:  # a gzip file (CSV export)
            lines = [f"{rng.randint(1, 10**6)},{rng.choice(b.LAST)},{rng.uniform(0, 1000):.2f},"
                     f"{rng.choice(EVENT_TYPES)}" for _ in range(rng.randint(200, 3000))]
            data = gzip.compress("\n".join(lines).encode(), 6, mtime=0)
            mime, ext = "application/gzip", "csv.gz"
        else:  # random bytes: a JPEG, PNG or zip file looks like this to a compressor
            data = rng.randbytes(rng.randint(4096, 131072))
            mime, ext = rng.choice((("image/jpeg", "jpg"), ("image/png", "png"),
                                    ("application/zip", "zip")))
        name = "-".join(prose.words_(rng.randint(1, 3))) + f"-{row + i}.{ext}"
        rows.append((name, mime, 1_700_000_000 + (row + i) * 60, hashlib.sha256(data).hexdigest(),
                     data))
    return {"INSERT INTO attachments (name, mime, created, sha256, data) VALUES (?,?,?,?,?)": rows}


def shop_token_schema():
    return ["""CREATE TABLE orders (id INTEGER PRIMARY KEY, token TEXT NOT NULL, name TEXT NOT NULL,
               amount REAL, created INTEGER, email TEXT, quantity INTEGER, status TEXT)""",
            "CREATE UNIQUE INDEX orders_token ON orders(token)",
            "CREATE INDEX orders_email ON orders(email)"]


def shop_token_batch(state, row):
    rng = state["rng"]
    rows = []
    for i in range(20000):
        first, last = rng.choice(b.FIRST), rng.choice(b.LAST)
        rows.append((f"{rng.getrandbits(40):010x}", f"{first} {last}", round(rng.uniform(1, 5000), 2),
                     1_700_000_000 + (row + i) * 7 + rng.randint(0, 6),
                     f"{first}.{last}{rng.randint(1, 9999)}@example.com",
                     rng.randint(1, 50), rng.choice(("pending", "paid", "shipped", "returned"))))
    # OR IGNORE: a token drawn twice (40 random bits: about one pair in a
    # million rows, 128 MiB) is left out
    return {"INSERT OR IGNORE INTO orders (token, name, amount, created, email, quantity, status)"
            " VALUES (?,?,?,?,?,?,?)": rows}


# name -> (seed, schema, batch, what it is)
KINDS = {
    "text": (101, text_schema, text_batch, "articles: prose, titles, slugs, 3 indexes"),
    "numbers": (102, numbers_schema, numbers_batch, "sensor time series and host metrics"),
    "tokens": (103, tokens_schema, tokens_batch, "sessions and API keys: UUIDs, SHA-256 hex"),
    "json": (104, json_schema, json_batch, "JSON event documents, 2 expression indexes"),
    "blobs": (105, blobs_schema, blobs_batch, "zlib, gzip and random BLOBs"),
    "shop-token": (106, shop_token_schema, shop_token_batch,
                   "short orders rows, each with a 10-hex-digit token"),
}


def path_of(kind, size_mib):
    return os.path.join(b.WORK, f"corpus-{kind}-{size_mib}.db")


def generate(kind, size_mib):
    """Makes corpus-KIND-N.db in BENCH_DIR unless it is there already;
    returns its path."""
    path = path_of(kind, size_mib)
    target = size_mib * 1048576
    if os.path.exists(path) and os.path.getsize(path) >= target * 0.97:
        return path
    seed, schema, batch, _ = KINDS[kind]
    for suffix in ("", "-wal", "-shm", ".tmp"):
        b.drop(path + suffix)
    tmp = path + ".tmp"
    db = sqlite3.connect(tmp, isolation_level=None)
    db.execute("PRAGMA journal_mode=OFF")
    db.execute("PRAGMA synchronous=OFF")
    db.execute("PRAGMA cache_size=-65536")
    for statement in schema():
        db.execute(statement)
    rng = random.Random(seed)
    state = {"rng": rng, "prose": Prose(random.Random(seed * 7))}
    row = 0
    while os.path.getsize(tmp) < target:
        statements = batch(state, row)
        db.execute("BEGIN")
        for sql, rows in statements.items():
            db.executemany(sql, rows)
        db.execute("COMMIT")
        row += max(len(rows) for rows in statements.values())
    db.execute("PRAGMA journal_mode=WAL")
    db.close()
    os.rename(tmp, path)
    return path


def main():
    parser = argparse.ArgumentParser(description="Generates bench/compression.py's databases, "
                                     "one per kind of data, in BENCH_DIR.")
    parser.add_argument("--size-mib", type=int, default=128,
                        help="size of each database (default: %(default)s)")
    parser.add_argument("--kinds", default=",".join(KINDS),
                        help="kinds to generate, comma-separated (default: %(default)s)")
    args = parser.parse_args()
    os.makedirs(b.WORK, exist_ok=True)
    for kind in args.kinds.split(","):
        path = generate(kind, args.size_mib)
        print(f"{kind:12} {b.mib(os.path.getsize(path)):>10}  {path}  ({KINDS[kind][3]})",
              flush=True)


if __name__ == "__main__":
    sys.exit(main())
