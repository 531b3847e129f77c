"""The HTTP endpoint under hostile clients on loopback: slow headers (slowloris),
silent connections, an endless header line, a client that never reads its
answers. While they are connected, /health and /metrics answer within a second,
each of them is cut off at its deadline, and the agent's descriptors and memory
stay bounded. The limits are http.c's: a request header must be complete 5 s
after the connection opened, its answer taken 10 s after that, at most 256
connections (a new one pushes out the one that has waited longest for its
header), 32 KiB of request per connection."""
import os
import random
import resource
import socket
import threading
import time
import unittest

from harness import create_database
from test_health import HealthTestCase

HEADER_SECONDS = 5
ANSWER_SECONDS = 10
CONNECTION_LIMIT = 256 + 64  # ours, and libmicrohttpd's spare above it
# What the deadlines may be late by on a loaded CI machine.
SLACK = 2.5
REQUEST = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slow\r\nX-Pad: " + \
    b"a" * 200 + b"\r\n\r\n"


def raise_descriptor_limit(wanted):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))


def agent_socket_inodes(pid):
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def server_side_inode(server_port, client_port):
    """The inode of the agent's end of one loopback connection (0: none)."""
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            local, remote = fields[1], fields[2]
            if (int(local.split(":")[1], 16) == server_port and
                    int(remote.split(":")[1], 16) == client_port):
                return int(fields[9])
    return 0


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Trickler(threading.Thread):
    """`count` clients that each send one byte of a request header every
    0.5-3 s, and reconnect when the agent cuts them off; records how long each
    connection lived before the agent closed it."""

    def __init__(self, port, count):
        super().__init__(daemon=True)
        self.port, self.count = port, count
        self.stop = threading.Event()
        self.lifetimes = []   # seconds from connect to the agent's close
        self.connected = 0
        self.errors = []

    def connect(self):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        s.setblocking(False)
        return {"socket": s, "opened": time.monotonic(), "sent": 0,
                "due": time.monotonic() + random.uniform(0.5, 3)}

    def run(self):
        try:
            clients = [self.connect() for _ in range(self.count)]
            self.connected = len(clients)
            while not self.stop.is_set():
                now = time.monotonic()
                for i, client in enumerate(clients):
                    if client["due"] > now:
                        continue
                    s = client["socket"]
                    try:
                        closed = s.recv(4096) == b""
                    except BlockingIOError:
                        closed = False
                    except OSError:
                        closed = True
                    if not closed:
                        try:
                            # Never the last byte: the header is never complete.
                            s.send(REQUEST[client["sent"] % (len(REQUEST) - 4):][:1])
                            client["sent"] += 1
                        except OSError:
                            closed = True
                    if closed:
                        self.lifetimes.append(now - client["opened"])
                        s.close()
                        clients[i] = client = self.connect()
                    client["due"] = now + random.uniform(0.5, 3)
                time.sleep(0.05)
            for client in clients:
                client["socket"].close()
        except Exception as e:  # reported by the test, not lost in a thread
            self.errors.append(repr(e))


@unittest.skipUnless(os.path.exists("/proc/net/tcp"), "needs Linux /proc")
class SlowClientsTest(HealthTestCase):
    def setUp(self):
        super().setUp()
        raise_descriptor_limit(4096)
        create_database(self.db_path("app"), rows=200)
        self.configure(self.entry("app"))
        self.agent = self.start()
        self.wait_health("app", "healthy")

    def tearDown(self):
        if self.agent.poll() is None:
            code, _ = self.stop_agent(self.agent)
            self.assertEqual(code, 0, self.agent_log()[-3000:])
        super().tearDown()

    def get(self, path):
        """(status, seconds) of one GET on a new connection; status 0 when the
        agent did not answer within 1 s."""
        started = time.monotonic()
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.settimeout(max(0.01, 1 - (time.monotonic() - started)))
                s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                          "Connection: close\r\n\r\n".encode())
                answer = b""
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    answer += chunk
        except (socket.timeout, OSError):
            return 0, time.monotonic() - started
        elapsed = time.monotonic() - started
        status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.") else -1
        return status, elapsed

    def assert_answers_within_a_second(self, seconds, what):
        deadline = time.monotonic() + seconds
        probes = 0
        while time.monotonic() < deadline:
            for path in ("/health", "/metrics"):
                status, elapsed = self.get(path)
                self.assertEqual(status, 200, f"{path} while {what}: no answer within 1 s")
                self.assertLess(elapsed, 1.0, f"{path} while {what}")
                probes += 1
            time.sleep(0.2)
        return probes

    def agent_holds(self, client_socket):
        inode = server_side_inode(self.port, client_socket.getsockname()[1])
        return inode != 0 and inode in agent_socket_inodes(self.agent.pid)

    def test_health_and_metrics_answer_within_a_second_while_100_clients_trickle_headers(self):
        trickler = Trickler(self.port, 100)
        trickler.start()
        self.wait_for(lambda: trickler.connected == 100 or trickler.errors, timeout=20,
                      what="100 slow clients connected")
        try:
            self.assertGreater(self.assert_answers_within_a_second(12, "100 clients trickle"), 20)
        finally:
            trickler.stop.set()
            trickler.join(timeout=30)
        self.assertEqual(trickler.errors, [])
        # The agent cut every slow header off at its deadline, not later,
        # however often a byte came in.
        self.assertGreaterEqual(len(trickler.lifetimes), 100)
        self.assertLess(max(trickler.lifetimes), HEADER_SECONDS + SLACK + 3,
                        "a trickled header outlived its deadline")
        self.assertIsNone(self.agent.poll())

    def test_a_header_trickled_byte_by_byte_is_cut_off_at_its_deadline(self):
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
            closed_after = None
            for byte in REQUEST[:-4] * 4:
                try:
                    s.send(bytes([byte]))
                    s.settimeout(0.5)
                    if s.recv(4096) == b"":
                        closed_after = time.monotonic() - started
                        break
                except socket.timeout:
                    pass  # still open: one more byte resets libmicrohttpd's idle timer
                except OSError:
                    closed_after = time.monotonic() - started
                    break
                if time.monotonic() - started > HEADER_SECONDS + 3 * SLACK:
                    break
        self.assertIsNotNone(closed_after, "a header trickled for 12 s was still accepted")
        self.assertGreater(closed_after, HEADER_SECONDS - 0.5)
        self.assertLess(closed_after, HEADER_SECONDS + SLACK)

    def test_a_flood_of_silent_connections_neither_blocks_health_nor_grows_descriptors(self):
        baseline = len(agent_socket_inodes(self.agent.pid))
        silent = []
        try:
            for _ in range(700):
                silent.append(socket.create_connection(("127.0.0.1", self.port), timeout=5))
            peak = 0
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                status, elapsed = self.get("/health")
                self.assertEqual(status, 200, "/health behind 700 silent connections")
                self.assertLess(elapsed, 1.0)
                peak = max(peak, len(agent_socket_inodes(self.agent.pid)))
            self.assertLessEqual(peak, baseline + CONNECTION_LIMIT + 2,
                                 "the agent holds more sockets than its connection limit")
            # Every silent connection is closed by the agent: at its header
            # deadline, or earlier, pushed out by a newer one.
            for s in silent:
                s.settimeout(HEADER_SECONDS + SLACK)
            started = time.monotonic()
            for s in silent:
                try:
                    self.assertEqual(s.recv(1), b"")
                except ConnectionResetError:
                    pass
            self.assertLess(time.monotonic() - started, HEADER_SECONDS + SLACK)
        except socket.timeout:
            self.fail("a silent connection outlived the header deadline")
        finally:
            for s in silent:
                s.close()
        self.wait_for(lambda: len(agent_socket_inodes(self.agent.pid)) <= baseline, timeout=10,
                      what="the agent's sockets back to where they were")
        self.assert_answers_within_a_second(1, "after the flood")

    def test_an_endless_header_line_is_refused_and_costs_bounded_memory(self):
        before = rss_kib(self.agent.pid)
        sent, started, refused_after, answer = 0, time.monotonic(), None, b""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Endless: ")
            s.setblocking(False)
            chunk = b"a" * 65536
            while time.monotonic() - started < HEADER_SECONDS + 3 * SLACK:
                try:
                    data = s.recv(4096)
                    answer += data
                    if data == b"":
                        refused_after = time.monotonic() - started
                        break
                except BlockingIOError:
                    pass
                except OSError:
                    refused_after = time.monotonic() - started
                    break
                try:
                    sent += s.send(chunk)
                except BlockingIOError:
                    time.sleep(0.01)
                except OSError:
                    refused_after = time.monotonic() - started
                    break
        self.assertIsNotNone(refused_after, f"{sent} bytes of one header line were taken")
        self.assertLess(refused_after, HEADER_SECONDS + SLACK)
        if answer:
            self.assertRegex(answer, rb"^HTTP/1\.[01] 4\d\d ")
        self.assertLess(rss_kib(self.agent.pid) - before, 8 * 1024,
                        "an endless header grew the agent by more than 8 MiB")
        self.assert_answers_within_a_second(1, "after an endless header")

    def test_a_client_that_never_reads_its_answer_holds_nothing(self):
        # libmicrohttpd closes after each answer: once the answer is in the
        # socket buffers the agent lets go; one that does not fit is cut off
        # 10 s after its header, whether or not the client reads.
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", self.port))
        try:
            started = time.monotonic()
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            self.assert_answers_within_a_second(2, "a client does not read")
            self.wait_for(lambda: not self.agent_holds(s),
                          timeout=HEADER_SECONDS + ANSWER_SECONDS + SLACK - 2,
                          what="the agent to drop the client that does not read")
            self.assertLess(time.monotonic() - started, HEADER_SECONDS + ANSWER_SECONDS + SLACK)
        finally:
            s.close()

    def test_a_request_body_trickled_after_the_header_is_not_waited_for(self):
        # Nothing served takes a body: the answer goes out when the header
        # is complete, and the connection closes, however slowly a body comes.
        for header, piece in (
                (b"POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n", b"a"),
                (b"POST /health HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
                 b"1\r\na\r\n"),
                (b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n", b"a")):
            started, answer = time.monotonic(), b""
            with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
                s.sendall(header)
                s.settimeout(0.2)
                while time.monotonic() - started < HEADER_SECONDS + ANSWER_SECONDS + SLACK:
                    try:
                        s.send(piece)
                        chunk = s.recv(65536)
                        if not chunk:
                            break
                        answer += chunk
                    except socket.timeout:
                        continue
                    except OSError:
                        break
            self.assertLess(time.monotonic() - started, 1.0, header[:40])
            self.assertRegex(answer, rb"^HTTP/1\.1 (200|405) ", header[:40])

    def test_a_client_that_reads_slowly_still_gets_its_answer(self):
        # The deadlines are generous for an honest client on a slow link.
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            for byte in b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n":
                s.send(bytes([byte]))
                time.sleep(0.04)
            answer = b""
            while True:
                time.sleep(0.05)
                chunk = s.recv(64)
                if not chunk:
                    break
                answer += chunk
        self.assertTrue(answer.startswith(b"HTTP/1.1 200 "), answer[:100])
        self.assertTrue(answer.rstrip().endswith(b"}"), answer[-100:])


if __name__ == "__main__":
    unittest.main()
