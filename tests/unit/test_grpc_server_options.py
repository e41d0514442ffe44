"""The gRPC server's options: connections age out only when an age is set, with the drain as their grace."""

from __future__ import annotations

from ingot.common.grpcserver import SERVER_OPTIONS, server_options


def test_without_an_age_connections_live_as_long_as_their_clients_keep_them():
    assert server_options() == SERVER_OPTIONS
    assert "grpc.max_connection_age_ms" not in dict(server_options(0, 600))


def test_an_aged_connection_closes_after_its_calls_had_the_drain_time_to_finish():
    options = dict(server_options(300, 600))
    assert options["grpc.max_connection_age_ms"] == 300_000
    assert options["grpc.max_connection_age_grace_ms"] == 600_000
    assert dict(SERVER_OPTIONS).items() <= options.items()
