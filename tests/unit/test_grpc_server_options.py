"""The gRPC server's options: a taken port is an error unless reuse is asked for; connections age out only
when an age is set, with a grace of their own so that ageing never cuts a stream short of it."""

from __future__ import annotations

import socket

from ingot.common.grpcserver import ServiceSettings, bind_failure, server_options


def test_a_port_is_shared_only_when_an_operator_asks():
    assert dict(server_options(ServiceSettings()))["grpc.so_reuseport"] == 0
    assert dict(server_options(ServiceSettings(reuse_port=True)))["grpc.so_reuseport"] == 1


def test_without_an_age_connections_live_as_long_as_their_clients_keep_them():
    assert "grpc.max_connection_age_ms" not in dict(server_options(ServiceSettings(max_connection_age=0)))


def test_an_aged_connection_gets_its_own_grace_for_the_calls_still_on_it():
    options = dict(server_options(ServiceSettings(max_connection_age=300, max_connection_age_grace=7200,
                                                  shutdown_grace=5)))
    assert options["grpc.max_connection_age_ms"] == 300_000
    assert options["grpc.max_connection_age_grace_ms"] == 7_200_000


def test_a_taken_address_is_named_with_what_to_do():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        message = bind_failure("tokenizer", f"127.0.0.1:{port}")
    assert f"cannot listen on 127.0.0.1:{port}: the address is already in use by another process" in message
    assert "--reuse-port" in message
