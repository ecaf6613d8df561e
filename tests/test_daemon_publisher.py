"""ZeroMQ publisher on real sockets: ipc and tcp, sequence numbers, a second instance, CURVE, HWM."""

from __future__ import annotations

import io
import socket
import stat
import subprocess
import sys
import threading
import time

import pytest
import zmq

from edge_dac.daemon.keys import create_key_pair
from edge_dac.daemon.listen import Subscriber, listen
from edge_dac.daemon.publisher import Publisher
from edge_dac.errors import ConfigError, EdgeDacError
from tests.test_daemon_support import (
    caption_body,
    connect_until_flowing,
    event_body,
    free_tcp_endpoint,
    status_body,
)


@pytest.fixture
def ipc_endpoint(tmp_path):
    (tmp_path / "run").mkdir()
    return f"ipc://{tmp_path}/run/captions.sock"


@pytest.mark.parametrize("transport", ["ipc", "tcp"])
def test_topics_and_per_topic_sequence_numbers(transport, ipc_endpoint):
    endpoint = ipc_endpoint if transport == "ipc" else free_tcp_endpoint()
    publisher = Publisher(endpoint, "kitchen")
    subscriber = Subscriber(endpoint)
    try:
        connect_until_flowing(publisher, subscriber)
        for i in range(3):
            publisher.publish("caption", caption_body(i * 32000))
        publisher.publish("status", status_body())
        got = [subscriber.receive(2.0) for _ in range(4)]
    finally:
        subscriber.close()
        publisher.close()
    captions = [m for t, m in got if t == "edge-dac/v1/caption/kitchen"]
    assert [m["seq"] for m in captions] == [0, 1, 2]
    assert [m["audio"]["start_sample"] for m in captions] == [0, 32000, 64000]
    statuses = [m for t, m in got if t == "edge-dac/v1/status/kitchen"]
    assert len(statuses) == 1 and statuses[0]["seq"] > 0  # status seq continues its own count
    assert all(m["device"] == "kitchen" and m["schema_version"] == 1 for _, m in got)


def test_second_instance_on_same_ipc_endpoint_is_refused(ipc_endpoint):
    first = Publisher(ipc_endpoint, "a")
    try:
        with pytest.raises(EdgeDacError, match="already publishes here"):
            Publisher(ipc_endpoint, "b")
        # Also from another process: the lock is per open file, so this is what a second daemon sees.
        code = (
            "import sys\nfrom edge_dac.daemon.publisher import Publisher\nfrom edge_dac.errors import EdgeDacError\n"
            f"try:\n    Publisher({ipc_endpoint!r}, 'b')\nexcept EdgeDacError as e:\n    print(e); sys.exit(3)\n"
        )
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
        assert result.returncode == 3 and "another edge-dac daemon" in result.stdout
    finally:
        first.close()
    Publisher(ipc_endpoint, "c").close()  # free again once the first one closed


def test_foreign_listener_on_ipc_path_is_refused_but_stale_file_is_not(tmp_path):
    path = tmp_path / "captions.sock"
    foreign = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    foreign.bind(str(path))
    foreign.listen(1)
    with pytest.raises(EdgeDacError, match="another program"):
        Publisher(f"ipc://{path}", "a")
    foreign.close()  # the file stays behind, as after a crash
    assert path.exists()
    Publisher(f"ipc://{path}", "a").close()


def test_second_instance_on_same_tcp_port_is_refused():
    endpoint = free_tcp_endpoint()
    first = Publisher(endpoint, "a")
    try:
        with pytest.raises(EdgeDacError, match="already in use"):
            Publisher(endpoint, "b")
    finally:
        first.close()


def test_slow_subscriber_never_blocks_publisher_and_sees_gaps(ipc_endpoint):
    publisher = Publisher(ipc_endpoint, "dev", hwm=10)
    subscriber = Subscriber(ipc_endpoint)
    subscriber.socket.setsockopt(zmq.RCVHWM, 10)
    connect_until_flowing(publisher, subscriber)
    sent = 20_000
    body = caption_body(text="x" * 1000)
    done = threading.Event()

    def flood():
        for _ in range(sent):
            publisher.publish("caption", body)
        done.set()

    thread = threading.Thread(target=flood, daemon=True)
    thread.start()
    # The subscriber reads nothing while the flood runs; a blocking publisher would never finish.
    assert done.wait(30), "publisher blocked on a subscriber that does not read"
    seqs = []
    while (item := subscriber.receive(0.3)) is not None:
        seqs.append(item[1]["seq"])
    subscriber.close()
    publisher.close()
    assert 0 < len(seqs) < sent
    gaps = [b - a for a, b in zip(seqs, seqs[1:], strict=False) if b - a > 1]
    assert gaps or seqs[-1] < sent - 1  # the loss is visible to the subscriber


def test_curve_lets_authorised_clients_in_and_keeps_others_out(tmp_path):
    keys, authorised = tmp_path / "keys", tmp_path / "authorised"
    authorised.mkdir()
    create_key_pair(keys, "server")
    good_public, good_secret = create_key_pair(keys, "display")
    _, bad_secret = create_key_pair(keys, "stranger")
    (authorised / good_public.name).write_bytes(good_public.read_bytes())
    assert stat.S_IMODE(good_secret.stat().st_mode) == 0o600

    endpoint = free_tcp_endpoint()
    publisher = Publisher(
        endpoint, "dev", curve_secret_key=keys / "server.key_secret", curve_authorized_keys=authorised
    )
    good = Subscriber(endpoint, server_key=keys / "server.key", client_key=good_secret)
    bad = Subscriber(endpoint, server_key=keys / "server.key", client_key=bad_secret)
    plain = Subscriber(endpoint)
    try:
        connect_until_flowing(publisher, good)
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            publisher.publish("caption", caption_body())
            time.sleep(0.05)
        assert good.receive(1.0) is not None
        assert bad.receive(0.2) is None
        assert plain.receive(0.2) is None
    finally:
        for sub in (good, bad, plain):
            sub.close()
        publisher.close()


def test_curve_config_errors_are_one_line(tmp_path):
    with pytest.raises(ConfigError, match="secret key not found"):
        Publisher(free_tcp_endpoint(), "d", curve_secret_key=tmp_path / "nope", curve_authorized_keys=tmp_path)
    public, _ = create_key_pair(tmp_path, "server")
    with pytest.raises(ConfigError, match="only a public key"):
        Publisher(free_tcp_endpoint(), "d", curve_secret_key=public, curve_authorized_keys=tmp_path)


def test_listen_prints_readable_lines_and_reports_gaps(ipc_endpoint):
    publisher = Publisher(ipc_endpoint, "kitchen")
    out, err = io.StringIO(), io.StringIO()
    result = {}
    thread = threading.Thread(
        target=lambda: result.setdefault("rc", listen(ipc_endpoint, count=3, timeout_s=10, out=out, err=err)),
        daemon=True,
    )
    thread.start()
    try:
        # Heartbeats until the subscription is through (slow joiner); only the first one prints.
        deadline = time.monotonic() + 5
        while not out.getvalue() and time.monotonic() < deadline:
            publisher.publish("status", status_body())
            time.sleep(0.05)
        publisher.publish("caption", caption_body(text="first"))
        publisher._seq["edge-dac/v1/caption/kitchen"] += 5  # lose five messages on the way
        publisher.publish("caption", caption_body(text="after the gap"))
        thread.join(5)
    finally:
        publisher.close()
    lines = out.getvalue().splitlines()
    assert result["rc"] == 0
    assert lines[0].startswith("[kitchen] running: source file 'scene.flac' healthy")
    assert lines[1].endswith("[kitchen] first") and lines[2].endswith("[kitchen] after the gap")
    assert "missed 5 message(s)" in err.getvalue()


def test_listen_to_one_topic_in_a_quiet_room_knows_the_daemon_is_alive(ipc_endpoint):
    """``edge-dac listen --topic event`` (the real command) while the daemon sends only heartbeats:
    no event, so nothing to print, but no "daemon not running" either, and exit 0; the heartbeats
    themselves are not printed. Then an event is, and a stopped daemon is told apart."""
    from edge_dac.daemon.status import Heartbeat

    publisher = Publisher(ipc_endpoint, "kitchen")
    heartbeat = Heartbeat(0.2, status_body, lambda body: publisher.publish("status", body))
    heartbeat.start()
    command = [sys.executable, "-m", "edge_dac", "listen", "--endpoint", ipc_endpoint, "--topic", "event"]
    try:
        quiet = subprocess.run([*command, "--timeout", "6"], capture_output=True, text=True, timeout=60)
        assert quiet.returncode == 0, quiet.stderr
        assert quiet.stdout == "" and "not running" not in quiet.stderr, quiet.stderr
        out, err = io.StringIO(), io.StringIO()
        result = {}
        thread = threading.Thread(target=lambda: result.setdefault(
            "rc", listen(ipc_endpoint, topic="event", count=1, timeout_s=20, out=out, err=err)), daemon=True)
        thread.start()
        time.sleep(1.0)  # the subscription reaches the publisher (slow joiner)
        while thread.is_alive() and not out.getvalue():
            publisher.publish("event", event_body("start"))
            thread.join(0.3)
        [line] = out.getvalue().splitlines()
        assert result["rc"] == 0 and "[kitchen] event start: a dog barks twice" in line
    finally:
        heartbeat.stop()
        publisher.close()
    # No daemon at all: the warning and exit 1, as before.
    gone = subprocess.run([*command, "--timeout", "4.5"], capture_output=True, text=True, timeout=60)
    assert gone.returncode == 1 and "daemon not running, not reachable, or not authorised" in gone.stderr


def test_reconfigure_keeps_sequence_numbers_and_a_refused_endpoint_changes_nothing(tmp_path):
    """SIGHUP's publisher changes on real sockets: a new endpoint and a new high-water mark on the
    same one each need a new socket, and the numbers go on across both; an endpoint already taken
    is refused and the running socket keeps publishing as before."""
    first, second = f"ipc://{tmp_path}/a.sock", f"ipc://{tmp_path}/b.sock"
    publisher = Publisher(first, "kitchen")
    squatter = Publisher(free_tcp_endpoint(), "other")
    try:
        subscriber = Subscriber(first)
        connect_until_flowing(publisher, subscriber)
        publisher.publish("caption", caption_body())
        assert subscriber.receive(2)[1]["seq"] == 0
        with pytest.raises(EdgeDacError, match="address already in use"):
            publisher.reconfigure(squatter.endpoint)
        publisher.publish("caption", caption_body())
        assert subscriber.receive(2)[1]["seq"] == 1  # still on the first endpoint, numbers unchanged
        subscriber.close()
        assert publisher.reconfigure(second) is True
        assert publisher.endpoint == second and not (tmp_path / "a.sock").exists()
        assert publisher.reconfigure(second, hwm=10) is True  # same endpoint, new socket
        assert publisher.reconfigure(second, hwm=10, ipc_mode=0o600) is False  # in place
        assert stat.S_IMODE((tmp_path / "b.sock").stat().st_mode) == 0o600
        subscriber = Subscriber(second)
        connect_until_flowing(publisher, subscriber)
        publisher.publish("caption", caption_body())
        assert subscriber.receive(2)[1]["seq"] == 2
        subscriber.close()
    finally:
        squatter.close()
        publisher.close()


def test_keys_command_writes_pair_and_refuses_overwrite(tmp_path):
    cmd = [sys.executable, "-m", "edge_dac", "keys", "display", "--dir", str(tmp_path)]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    assert (tmp_path / "display.key").is_file() and (tmp_path / "display.key_secret").is_file()
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert again.returncode == 2
    assert "--force" in again.stderr and "Traceback" not in again.stderr


def test_curve_key_added_to_the_folder_counts_after_reload(tmp_path):
    """SIGHUP re-reads the authorised folder: a key copied in lets its subscriber in without a restart."""
    keys, authorised = tmp_path / "keys", tmp_path / "authorised"
    authorised.mkdir()
    create_key_pair(keys, "server")
    public, secret = create_key_pair(keys, "late-display")
    endpoint = free_tcp_endpoint()
    publisher = Publisher(
        endpoint, "dev", curve_secret_key=keys / "server.key_secret", curve_authorized_keys=authorised
    )
    try:
        before = Subscriber(endpoint, server_key=keys / "server.key", client_key=secret)
        for _ in range(10):
            publisher.publish("status", status_body())
            time.sleep(0.05)
        assert before.receive(0.3) is None  # not authorised yet
        before.close()
        (authorised / public.name).write_bytes(public.read_bytes())
        publisher.reload_authorized_keys()
        after = Subscriber(endpoint, server_key=keys / "server.key", client_key=secret)
        try:
            connect_until_flowing(publisher, after)
        finally:
            after.close()
    finally:
        publisher.close()
