"""Continuous replication and point-in-time restore (issue 16), end to end:
the agent ships the WAL of a database that a separate writer process
(pitr_writer.py) changes at several hundred commits per second, and
`sqlprodd restore DB --to X --at T` must give, for random instants T, exactly
the database after one of the writer's commits (the same content hash),
holding every commit that returned before T - interval and none that began
after T.

The scenarios are in test_replicate_scenarios.py. On S3: 30 instants.

SQLPRODD_PITR_SECONDS (default 25) sets how long the writer runs in the two
main tests, SQLPRODD_PITR_INSTANTS (default 50) the number of restores.
"""
import unittest

from replica_case import ReplicaTestCase


class ReplicatePitrTest(ReplicaTestCase):
    def test_dir_target_restores_exactly_at_random_instants(self):
        self.window("dir")

    def test_s3_target_restores_exactly_at_random_instants(self):
        # Reading never waits for an upload (the uploader is a thread of its
        # own), so seen_at holds on S3 as on a dir. 30 restores: each costs a
        # listing and a fetch from the loopback server.
        self.window("s3", instants=30)


if __name__ == "__main__":
    unittest.main()
