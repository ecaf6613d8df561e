"""Sub-commands ``run``, ``listen`` and ``keys``; heavy imports happen inside the handlers."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    run = subparsers.add_parser("run", help="run the captioning daemon (source -> windows -> engine -> ZeroMQ)")
    run.add_argument("--config", help="daemon YAML (default: built-in defaults; see configs/daemon.yaml)")
    run.add_argument("--source", help="demo | file:PATH | mic | mic:NAME (overrides the config)")
    run.add_argument("--endpoint", help="ipc://PATH or tcp://HOST:PORT to publish on (overrides the config)")
    run.add_argument("--model", help="checkpoint directory (overrides engine.model; default: the shipped model)")
    run.add_argument("--fast", action="store_true", help="file/demo: read as fast as the engine keeps up")
    run.add_argument("--loop", action="store_true", help="file: start again at the end")
    run.add_argument("--print", dest="print_captions", action="store_true", help="also print captions to stdout")
    run.set_defaults(func=_run)

    listen = subparsers.add_parser("listen", help="print captions published by a running daemon")
    listen.add_argument("--endpoint", help="daemon endpoint (default: the local daemon's ipc socket)")
    listen.add_argument("--topic", help="topic prefix, e.g. caption, event, status or edge-dac/v1/caption/kitchen")
    listen.add_argument("--json", action="store_true", help="print every message as one JSON line")
    listen.add_argument("--count", type=int, help="exit after printing this many lines")
    listen.add_argument("--timeout", type=float, help="exit after this many seconds")
    listen.add_argument("--server-key", help="CURVE: the daemon's public .key file")
    listen.add_argument("--client-key", help="CURVE: your .key_secret file (its .key must be authorised)")
    listen.set_defaults(func=_listen)

    keys = subparsers.add_parser("keys", help="create a CURVE key pair for the daemon or a subscriber")
    keys.add_argument("name", nargs="?", default="server", help="key name (default: server)")
    keys.add_argument("--dir", default=".", help="folder to write NAME.key and NAME.key_secret into")
    keys.add_argument("--force", action="store_true", help="overwrite an existing pair")
    keys.set_defaults(func=_keys)


def _run(args: argparse.Namespace) -> int:
    import os
    import sys

    from edge_dac.daemon.run import run_from_args

    status = run_from_args(args)
    # The daemon has stopped cleanly (offline published, sockets and files closed). The interpreter's
    # own teardown (freeing torch's objects) can take seconds on a busy machine, past the 5 s a stop
    # is promised in; nothing in it is needed, so the process ends here.
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(status)


def _listen(args: argparse.Namespace) -> int:
    from edge_dac.daemon.config import default_endpoint
    from edge_dac.daemon.listen import listen

    return listen(
        args.endpoint or default_endpoint(),
        topic=args.topic,
        as_json=args.json,
        count=args.count,
        timeout_s=args.timeout,
        server_key=args.server_key,
        client_key=args.client_key,
    )


def _keys(args: argparse.Namespace) -> int:
    from edge_dac.daemon.keys import create_key_pair

    public, secret = create_key_pair(args.dir, args.name, force=args.force)
    print(f"public key: {public}  (give it out: daemon's to clients, clients' into the daemon's authorised folder)")
    print(f"secret key: {secret}  (keep it private)")
    return 0
