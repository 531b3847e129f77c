"""tree.py: the minimal Debian 12 tree the real-systemd test boots, cached.

debootstrap builds it once from the apt mirror this machine is configured
with (/etc/apt/sources.list and sources.list.d), with systemd as init and the
runtime dependencies of the built .deb preinstalled, so that installing the
.deb inside needs no network. The tree is cached under
/var/cache/sqlprodd-ci/ by a key of everything it is made from (suite,
mirror, architecture, package list): a rerun with the same list copies the
cached tree (seconds) instead of bootstrapping (minutes). A new dependency
makes a new key, hence a fresh tree; old trees are removed.

Not for: booting or checking anything (real_service.py does that).
"""

import hashlib
import os
import re
import shutil
import subprocess
import time

CACHE_ROOT = os.environ.get("SQLPRODD_CI_CACHE", "/var/cache/sqlprodd-ci")
SUITE = "bookworm"
# Bumped when the way the tree is made changes, so old caches are not reused.
TREE_FORMAT = "1"
# What the test itself needs in the tree besides the package's dependencies:
# systemd as PID 1, and sqlite3 to play the application that owns a
# database. Deliberately no procps: `systemctl reload` must work without it.
BASE_PACKAGES = ["systemd", "systemd-sysv", "sqlite3", "ca-certificates"]


def configured_mirror(suite=SUITE):
    """The first configured apt source of `suite` (not -security/-updates)."""
    sources = []
    for path in ["/etc/apt/sources.list"] + sorted(
        os.path.join("/etc/apt/sources.list.d", name)
        for name in (os.listdir("/etc/apt/sources.list.d") if os.path.isdir("/etc/apt/sources.list.d") else [])
    ):
        if not os.path.isfile(path):
            continue
        with open(path, encoding="utf-8", errors="replace") as stream:
            text = stream.read()
        if path.endswith(".sources"):
            for stanza in re.split(r"\n\s*\n", text):
                fields = {}
                for line in stanza.splitlines():
                    if line.startswith("#") or ":" not in line:
                        continue
                    key, _, value = line.partition(":")
                    fields[key.strip().lower()] = value.split()
                if "deb" in fields.get("types", []) and suite in fields.get("suites", []):
                    sources.extend(fields.get("uris", []))
        else:
            for line in text.splitlines():
                words = line.split("#", 1)[0].split()
                if len(words) >= 3 and words[0] == "deb":
                    if words[1].startswith("["):  # options: deb [signed-by=...] URI suite
                        while words and not words[0].endswith("]"):
                            words.pop(0)
                        words = ["deb"] + words[1:]
                    if len(words) >= 3 and words[2] == suite:
                        sources.append(words[1])
    if not sources:
        raise RuntimeError(f"no apt source for {suite} in /etc/apt/sources.list*: "
                           "the tree is made from the configured mirror")
    return sources[0]


def package_dependencies(deb):
    """Package names of the .deb's Depends (the first of each alternative)."""
    depends = subprocess.run(["dpkg-deb", "-f", deb, "Depends"], check=True,
                             capture_output=True, text=True).stdout
    names = []
    for clause in depends.split(","):
        first = clause.split("|")[0].strip()
        name = re.split(r"[\s(:]", first, 1)[0]
        if name:
            names.append(name)
    return names


def tree_key(mirror, packages, architecture):
    text = "\n".join([TREE_FORMAT, SUITE, mirror, architecture] + sorted(set(packages)))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cached_tree(deb, log=print):
    """The path of a cached tree for this .deb, bootstrapping it if needed.

    Returns (path, seconds spent bootstrapping, 0 when cached)."""
    architecture = subprocess.run(["dpkg", "--print-architecture"], check=True,
                                  capture_output=True, text=True).stdout.strip()
    mirror = configured_mirror()
    packages = sorted(set(BASE_PACKAGES + package_dependencies(deb)))
    key = tree_key(mirror, packages, architecture)
    tree = os.path.join(CACHE_ROOT, f"{SUITE}-{key}")
    if os.path.isfile(os.path.join(tree, ".sqlprodd-ci-complete")):
        log(f"cached tree {tree} ({SUITE}, {mirror}, {len(packages)} packages)")
        return tree, 0.0
    os.makedirs(CACHE_ROOT, mode=0o755, exist_ok=True)
    # Trees of other keys are stale (another package list): remove them.
    for name in os.listdir(CACHE_ROOT):
        if name.startswith(f"{SUITE}-") and name != f"{SUITE}-{key}":
            shutil.rmtree(os.path.join(CACHE_ROOT, name), ignore_errors=True)
    partial = tree + ".partial"
    shutil.rmtree(partial, ignore_errors=True)
    log(f"bootstrapping {SUITE} from {mirror} into {partial} with {' '.join(packages)}")
    started = time.monotonic()
    result = subprocess.run(
        ["debootstrap", "--variant=minbase", f"--arch={architecture}",
         "--include=" + ",".join(packages), SUITE, partial, mirror],
        capture_output=True, text=True)
    if result.returncode != 0:
        debootstrap_log = os.path.join(partial, "debootstrap", "debootstrap.log")
        details = ""
        if os.path.isfile(debootstrap_log):
            with open(debootstrap_log, errors="replace") as stream:
                details = stream.read()[-3000:]
        raise RuntimeError(f"debootstrap failed ({result.returncode}): "
                           f"{result.stderr[-3000:]}{details}")
    # apt inside must resolve the .deb's dependencies from what is installed;
    # its lists are those of the configured mirror.
    with open(os.path.join(partial, "etc/apt/sources.list"), "w") as stream:
        stream.write(f"deb {mirror} {SUITE} main\n")
    # An empty machine-id: systemd makes one at each boot (a copy per run).
    with open(os.path.join(partial, "etc/machine-id"), "w"):
        pass
    open(os.path.join(partial, ".sqlprodd-ci-complete"), "w").close()
    os.rename(partial, tree)
    seconds = time.monotonic() - started
    log(f"bootstrapped {tree} in {seconds:.0f} s")
    return tree, seconds
