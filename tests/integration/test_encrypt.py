"""Encrypted backups (encrypt = { recipients = (...); }), checked as an operator would.

What leaves the machine is an age v1 file that Debian's `age` opens; an
encrypted backup restores by hand with `aws`, `age -d`, `gunzip` and
`sqlite3` alone; `sqlprodd restore` reads files that `age -r` made; a wrong
or missing identity, a truncated or altered object, an identity file others
can read: each a clear message naming the object, exit 1, and nothing at
--to. Keys rotate: new recipients apply to new backups, old backups restore
with their old identity, `backups --remote` says which key each needs.
"""
import glob
import gzip
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import unittest

from harness import BUCKET, S3TestCase, create_database

MARKER = "plaintext-marker-7f3c9a"


def age_keygen(path):
    """A new identity file (0600, as age-keygen writes it) and its public key."""
    subprocess.run(["age-keygen", "-o", path], check=True, capture_output=True)
    os.chmod(path, 0o600)
    return subprocess.run(["age-keygen", "-y", path], check=True, capture_output=True,
                          text=True).stdout.strip()


def add_marker(path):
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE IF NOT EXISTS secrets(v TEXT)")
        connection.execute("INSERT INTO secrets VALUES (?)", (MARKER * 50,))


def rewrite_manifest(path, data):
    """The manifest made to match altered data: what a tamperer with write
    access to the bucket would do, so that decryption alone must catch it."""
    with open(path) as f:
        manifest = json.load(f)
    manifest["archive_sha256"] = hashlib.sha256(data).hexdigest()
    manifest["archive_bytes"] = len(data)
    with open(path, "w") as f:
        json.dump(manifest, f)


def marker_rows(path):
    with sqlite3.connect(path) as connection:
        return connection.execute("SELECT count(*) FROM secrets").fetchone()[0]


@unittest.skipUnless(shutil.which("age") and shutil.which("age-keygen"),
                     "the age tool is not installed (Debian package age)")
class EncryptedBackups(S3TestCase):
    def setUp(self):
        super().setUp()
        self.key = os.path.join(self.dir, "key.txt")
        self.recipient = age_keygen(self.key)
        create_database(self.db_path(), rows=2000)
        add_marker(self.db_path())

    def run_cli(self, *args, **kwargs):
        """With the S3 server's credentials, as the agent's unit would have them."""
        return super().run_cli(*args, env=self.env, **kwargs)

    def configure(self, target, encrypt, targets):
        self.write_config(
            f'{{ name = "app"; path = "{self.db_path()}"; '
            f'upload = {{ target = "{target}"; keep = {{ last = 10; }}; }}; '
            f'encrypt = {{ {encrypt} }}; }}', targets=targets)

    def configure_s3(self, encrypt=None):
        server = self.start_server()
        self.configure("offsite", encrypt or f'recipients = ( "{self.recipient}" );',
                       self.s3_target(server.url))

    def remote_keys(self):
        listing = json.loads(self.aws_cli("s3api", "list-objects-v2", "--bucket", BUCKET,
                                          "--prefix", "db/app/").stdout or "{}")
        return sorted(item["Key"] for item in listing.get("Contents", []))

    def fetch(self, key):
        path = os.path.join(self.dir, os.path.basename(key))
        if os.path.exists(path):
            os.unlink(path)
        self.aws_cli("s3", "cp", "--only-show-errors", f"s3://{BUCKET}/{key}", path)
        return path

    def back_up(self):
        self.run_cli("backup", "app", check=0)
        self.run_cli("upload", "app", check=0)

    def test_by_hand_with_aws_age_gunzip_sqlite3(self):
        self.configure_s3()
        self.back_up()
        keys = self.remote_keys()
        archives = [k for k in keys if k.endswith(".db.gz.age")]
        self.assertEqual(len(archives), 1, keys)
        self.assertEqual(keys, [archives[0], archives[0] + ".json"])
        # The bucket alone reveals nothing: no plaintext, an age header.
        sealed = self.fetch(archives[0])
        with open(sealed, "rb") as f:
            data = f.read()
        self.assertTrue(data.startswith(b"age-encryption.org/v1\n-> X25519 "))
        self.assertNotIn(MARKER.encode(), data)
        with open(self.fetch(archives[0] + ".json")) as f:
            manifest = json.load(f)
        self.assertEqual(manifest["encryption"], {"format": "age-encryption.org/v1",
                                                  "recipients": [self.recipient]})
        self.assertEqual(manifest["archive_sha256"], hashlib.sha256(data).hexdigest())
        self.assertEqual(manifest["archive_bytes"], len(data))
        # Restored by hand: the commands sqlprodd.conf(5) prints.
        restored = os.path.join(self.dir, "by-hand.db")
        subprocess.run(f"age -d -i {self.key} {sealed} | gunzip > {restored}", shell=True,
                       check=True)
        check = subprocess.run(["sqlite3", restored, "PRAGMA integrity_check"],
                               capture_output=True, text=True, check=True)
        self.assertEqual(check.stdout.strip(), "ok")
        self.assertEqual(marker_rows(restored), 1)
        # Local archives stay readable here unless encrypt.local is set.
        self.assertEqual(len(glob.glob(os.path.join(self.backup_dir, "app", "*.db.gz"))), 1)
        self.assertEqual(glob.glob(os.path.join(self.backup_dir, "app", "*tmp*")), [])

    def test_a_multipart_archive_is_sealed_as_it_is_sent(self):
        """An archive above the part size (5 MB here) goes up in parts, each
        encrypted as it is read: no sealed copy is written beside the local
        archive, and the object is still one age file whose SHA-256 the
        manifest gives (not x-amz-meta-sha256: it exists only once sent)."""
        with sqlite3.connect(self.db_path()) as connection:
            connection.execute("CREATE TABLE noise(v BLOB)")
            connection.executemany("INSERT INTO noise VALUES (?)",
                                   [(os.urandom(4096),) for _ in range(3000)])
        self.configure_s3()
        self.run_cli("backup", "app", check=0)
        archive = glob.glob(os.path.join(self.backup_dir, "app", "*.db.gz"))[0]
        # More than two parts of 5 MB (s3rver's ETags do not show the count).
        self.assertGreater(os.path.getsize(archive), 11 * 1000 * 1000)
        # Watch the backup directory while the upload runs: a sealed copy
        # of 12 MB would be there for a while.
        watcher = subprocess.Popen(
            ["sh", "-c", f"while :; do ls {os.path.dirname(archive)}; sleep 0.01; done"],
            stdout=subprocess.PIPE, text=True)
        try:
            self.run_cli("upload", "app", check=0)
        finally:
            watcher.kill()
        seen = set(watcher.communicate()[0].split())
        self.assertIn(os.path.basename(archive), seen)
        self.assertEqual({name for name in seen if ".age" in name and ".json" not in name}, set(),
                         seen)
        key = [k for k in self.remote_keys() if k.endswith(".db.gz.age")][0]
        head = json.loads(self.aws_cli("s3api", "head-object", "--bucket", BUCKET,
                                       "--key", key).stdout)
        sealed = self.fetch(key)
        with open(sealed, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        with open(self.fetch(key + ".json")) as f:
            manifest = json.load(f)
        self.assertEqual(manifest["archive_sha256"], digest)
        self.assertNotIn("sha256", head.get("Metadata", {}))
        self.assertEqual(manifest["archive_bytes"], os.path.getsize(sealed))
        restored = os.path.join(self.dir, "by-hand.db")
        subprocess.run(f"age -d -i {self.key} {sealed} | gunzip > {restored}", shell=True,
                       check=True)
        # The local archive, unencrypted, holds the same database.
        with open(restored, "rb") as a, gzip.open(archive, "rb") as b:
            self.assertEqual(hashlib.sha256(a.read()).hexdigest(),
                             hashlib.sha256(b.read()).hexdigest())
        result = self.run_cli("restore", "app", "--to", os.path.join(self.dir, "r.db"),
                              "--from", "remote", "--identity", self.key, check=0)
        self.assertIn("sha256 matches the manifest", result.stdout)

    def test_restore_with_identity_and_its_refusals(self):
        self.configure_s3()
        self.back_up()
        to = os.path.join(self.dir, "restored.db")
        # No identity: named object, how to give one, nothing written.
        result = self.run_cli("restore", "app", "--to", to, "--from", "remote", check=1)
        self.assertIn("app/app-", result.stderr)
        self.assertIn(".db.gz.age on target offsite is encrypted", result.stderr)
        self.assertIn("--identity FILE", result.stderr)
        self.assertEqual(glob.glob(to + "*"), [])
        # The wrong identity.
        other = os.path.join(self.dir, "other.txt")
        other_recipient = age_keygen(other)
        result = self.run_cli("restore", "app", "--to", to, "--from", "remote",
                              "--identity", other, check=1)
        self.assertIn("no identity matches any recipient of app/app-", result.stderr)
        self.assertIn(other_recipient, result.stderr)
        self.assertEqual(glob.glob(to + "*"), [])
        # An identity file others can read is refused, with the fix.
        os.chmod(self.key, 0o644)
        result = self.run_cli("restore", "app", "--to", to, "--from", "remote",
                              "--identity", self.key, check=1)
        self.assertIn(f"identity file {self.key}", result.stderr)
        self.assertIn("chmod 640", result.stderr)
        os.chmod(self.key, 0o600)
        # The right one.
        result = self.run_cli("restore", "app", "--to", to, "--from", "remote",
                              "--identity", self.key, check=0)
        self.assertIn("sha256 matches the manifest", result.stdout)
        self.assertEqual(marker_rows(to), 1)

    def damage_and_restore(self, damage):
        """Alters the remote archive (its manifest's sha256 made to match, so
        that decryption itself must catch it) and restores it."""
        self.configure_s3()
        self.back_up()
        key = [k for k in self.remote_keys() if k.endswith(".age")][0]
        path = self.fetch(key)
        with open(path, "rb") as f:
            data = damage(bytearray(f.read()))
        with open(path, "wb") as f:
            f.write(data)
        manifest_path = self.fetch(key + ".json")
        rewrite_manifest(manifest_path, data)
        self.aws_cli("s3", "cp", "--only-show-errors", path, f"s3://{BUCKET}/{key}")
        self.aws_cli("s3", "cp", "--only-show-errors", manifest_path, f"s3://{BUCKET}/{key}.json")
        to = os.path.join(self.dir, "restored.db")
        result = self.run_cli("restore", "app", "--to", to, "--from", "remote",
                              "--identity", self.key, check=1)
        self.assertIn(key[len("db/"):], result.stderr)
        self.assertEqual(glob.glob(to + "*"), [])
        return result.stderr

    def test_a_flipped_byte_is_refused(self):
        def flip(data):
            data[len(data) // 2] ^= 0x01
            return data
        message = self.damage_and_restore(flip)
        self.assertIn("fails authentication", message)
        self.assertIn("nothing decrypted from it may be used", message)

    def test_a_truncated_object_is_refused(self):
        # Cut on a chunk boundary: every chunk left authenticates, only the
        # STREAM's last-chunk flag tells the file is not whole.
        def cut(data):
            header = data.index(b"\n---") + 1
            header = data.index(b"\n", header) + 1 + 16  # the MAC line, then the nonce
            chunks = -(-(len(data) - header) // (65536 + 16))
            return data[:header + (chunks - 1) * (65536 + 16)]
        message = self.damage_and_restore(cut)
        self.assertRegex(message, "truncated|fails authentication")

    def test_an_unknown_recipient_type_is_named(self):
        self.configure_s3()
        self.back_up()
        key = [k for k in self.remote_keys() if k.endswith(".age")][0]
        path = self.fetch(key)
        with open(path, "rb") as f:
            data = f.read()
        # The first stanza's type renamed: a file made for a plugin recipient.
        data = data.replace(b"-> X25519 ", b"-> piv-p256 ", 1)
        with open(path, "wb") as f:
            f.write(data)
        manifest_path = self.fetch(key + ".json")
        rewrite_manifest(manifest_path, data)
        self.aws_cli("s3", "cp", "--only-show-errors", path, f"s3://{BUCKET}/{key}")
        self.aws_cli("s3", "cp", "--only-show-errors", manifest_path, f"s3://{BUCKET}/{key}.json")
        to = os.path.join(self.dir, "restored.db")
        result = self.run_cli("restore", "app", "--to", to, "--from", "remote",
                              "--identity", self.key, check=1)
        self.assertIn("piv-p256", result.stderr)
        self.assertIn(key[len("db/"):], result.stderr)
        self.assertEqual(glob.glob(to + "*"), [])

    def test_key_rotation(self):
        self.configure_s3()
        self.back_up()
        first = [k for k in self.remote_keys() if k.endswith(".age")]
        new_key = os.path.join(self.dir, "new.txt")
        new_recipient = age_keygen(new_key)
        self.configure("offsite", f'recipients = ( "{new_recipient}" );',
                       self.s3_target(self.server.url))
        subprocess.run(["sleep", "1.1"])  # archive names are per second
        self.back_up()
        listing = json.loads(self.run_cli("backups", "app", "--remote", "--json", check=0).stdout)
        listing = [item for item in listing if "key" in item]
        by_key = {item["key"]: item["encrypted_to"] for item in listing}
        self.assertEqual(by_key[first[0][len("db/"):]], self.recipient)
        newest = listing[0]
        self.assertEqual(newest["encrypted_to"], new_recipient)
        text = self.run_cli("backups", "app", "--remote", check=0).stdout
        self.assertIn(f"encrypted to {new_recipient}", text)
        self.assertIn(f"encrypted to {self.recipient}", text)
        old_id = [i["id"] for i in listing if i["encrypted_to"] == self.recipient][0]
        to = os.path.join(self.dir, "old.db")
        self.run_cli("restore", "app", "--to", to, "--from", "remote", "--backup", old_id,
                     "--identity", self.key, check=0)
        result = self.run_cli("restore", "app", "--to", os.path.join(self.dir, "x.db"),
                              "--from", "remote", "--backup", old_id, "--identity", new_key,
                              check=1)
        self.assertIn("no identity matches", result.stderr)
        self.run_cli("restore", "app", "--to", os.path.join(self.dir, "new.db"), "--from",
                     "remote", "--identity", new_key, check=0)

    def test_identity_from_the_configuration(self):
        self.configure_s3(f'recipients = ( "{self.recipient}" ); identity = "{self.key}";')
        self.back_up()
        to = os.path.join(self.dir, "restored.db")
        self.run_cli("restore", "app", "--to", to, "--from", "remote", check=0)
        self.assertEqual(marker_rows(to), 1)


@unittest.skipUnless(shutil.which("age") and shutil.which("age-keygen"),
                     "the age tool is not installed (Debian package age)")
class EncryptedLocalArchives(S3TestCase):
    """encrypt.local and a dir target: no S3 needed, the same files."""

    def setUp(self):
        super().setUp()
        self.key = os.path.join(self.dir, "key.txt")
        self.recipient = age_keygen(self.key)
        create_database(self.db_path(), rows=2000)
        add_marker(self.db_path())
        self.target = os.path.join(self.dir, "target")
        os.mkdir(self.target)

    def test_local_archives_encrypted_when_asked(self):
        self.write_config(
            f'{{ name = "app"; path = "{self.db_path()}"; upload = {{ target = "nas"; }}; '
            f'encrypt = {{ recipients = ( "{self.recipient}" ); local = true; }}; }}',
            targets=f'{{ name = "nas"; type = "dir"; path = "{self.target}"; }}')
        self.run_cli("backup", "app", check=0)
        self.run_cli("upload", "app", check=0)
        local = sorted(os.listdir(os.path.join(self.backup_dir, "app")))
        self.assertEqual(len(local), 2, local)
        self.assertTrue(local[0].endswith(".db.gz.age"), local)
        for name in local[:1]:
            with open(os.path.join(self.backup_dir, "app", name), "rb") as f:
                data = f.read()
            self.assertTrue(data.startswith(b"age-encryption.org/v1\n"))
            self.assertNotIn(MARKER.encode(), data)
        # The same object goes off-site, as it is.
        remote = os.path.join(self.target, "app", local[0])
        with open(remote, "rb") as f:
            self.assertEqual(f.read(), data)
        listing = self.run_cli("backups", "app", check=0).stdout
        self.assertIn(f"encrypted to {self.recipient}", listing)
        to = os.path.join(self.dir, "restored.db")
        self.run_cli("restore", "app", "--to", to, "--from", "local", "--identity", self.key,
                     check=0)
        self.assertEqual(marker_rows(to), 1)

    def test_restore_reads_what_age_made(self):
        """An archive encrypted by hand with `age -r` (the operator's own
        copy) restores: the manifest's sha256 is of the stored file."""
        self.write_config(f'{{ name = "app"; path = "{self.db_path()}"; }}')
        self.run_cli("backup", "app", check=0)
        directory = os.path.join(self.backup_dir, "app")
        plain = [n for n in os.listdir(directory) if n.endswith(".db.gz")][0]
        sealed = os.path.join(directory, plain + ".age")
        subprocess.run(["age", "-r", self.recipient, "-o", sealed, os.path.join(directory, plain)],
                       check=True)
        with open(os.path.join(directory, plain + ".json")) as f:
            manifest = json.load(f)
        with open(sealed, "rb") as f:
            manifest["archive_sha256"] = hashlib.sha256(f.read()).hexdigest()
        manifest["archive"] = plain + ".age"
        os.unlink(os.path.join(directory, plain))
        os.unlink(os.path.join(directory, plain + ".json"))
        with open(sealed + ".json", "w") as f:
            json.dump(manifest, f)
        to = os.path.join(self.dir, "restored.db")
        result = self.run_cli("restore", "app", "--to", to, "--identity", self.key, check=0)
        self.assertIn("sha256 matches the manifest", result.stdout)
        self.assertEqual(marker_rows(to), 1)

    def test_check_finds_an_identity_that_opens_nothing(self):
        other = os.path.join(self.dir, "other.txt")
        age_keygen(other)
        for identity, code in ((self.key, 0), (other, 1)):
            self.write_config(
                f'{{ name = "app"; path = "{self.db_path()}"; encrypt = {{ '
                f'recipients = ( "{self.recipient}" ); identity = "{identity}"; }}; }}')
            result = self.run_cli("check", check=code)
        self.assertRegex(result.stdout, r"sqlprodd.conf:\d+: databases.app.encrypt.identity: "
                                        + other + r" \(encrypt.identity\) holds no identity of "
                                        r"the recipients")

    def test_bad_keys_in_the_configuration(self):
        recipients = os.path.join(self.dir, "recipients.txt")
        with open(recipients, "w") as f:
            f.write(f"# the backup key\n{self.recipient}\nssh-ed25519 AAAAC3Nza\n")
        self.write_config(
            f'{{ name = "app"; path = "{self.db_path()}";\n'
            f'  encrypt = {{ recipients = ( "age1notakey" );\n'
            f'    recipients_file = "{recipients}"; }}; }}')
        result = self.run_cli("check", check=2)
        self.assertRegex(result.stderr, r"sqlprodd.conf:\d+: databases.app.encrypt.recipients\[0\]:")
        self.assertIn(f"databases.app.encrypt.recipients_file: {recipients}:3:", result.stderr)
        self.assertIn("ssh-ed25519", result.stderr)
        fifo = os.path.join(self.dir, "fifo")
        os.mkfifo(fifo)
        self.write_config(f'{{ name = "app"; path = "{self.db_path()}"; '
                          f'encrypt = {{ recipients_file = "{fifo}"; }}; }}')
        result = self.run_cli("check", check=2, timeout=20)
        self.assertIn("is not a regular file", result.stderr)


if __name__ == "__main__":
    unittest.main()
