"""The bounded window queue (drop-oldest under overload) and the worker's batching."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np

from edge_dac.daemon.windows import Window
from edge_dac.daemon.worker import InferenceWorker, WindowQueue


def window(index: int, length: int = 16) -> Window:
    samples = np.full(length, index, dtype=np.float32)
    return Window(samples, index * length, (index + 1) * length, level_dbfs=-20.0, silent=False)


def test_full_queue_drops_oldest_and_counts():
    queue = WindowQueue(3)
    dropped = [queue.put(window(i)) for i in range(5)]
    assert [d.start_sample if d else None for d in dropped] == [None, None, None, 0, 16]
    assert queue.dropped == 2
    assert [w.start_sample for w in queue.get_batch(10, 0)] == [32, 48, 64]  # newest survive, oldest first


def test_batches_are_bounded_and_ordered():
    queue = WindowQueue(10)
    for i in range(5):
        queue.put(window(i))
    assert [w.start_sample // 16 for w in queue.get_batch(2, 0)] == [0, 1]
    assert [w.start_sample // 16 for w in queue.get_batch(2, 0)] == [2, 3]
    assert len(queue) == 1 and queue.dropped == 0


def test_waiting_put_applies_backpressure_instead_of_dropping():
    queue = WindowQueue(1)
    queue.put(window(0))
    thread = threading.Thread(target=lambda: queue.put(window(1), wait=True))
    thread.start()
    thread.join(0.2)
    assert thread.is_alive()  # blocked: no room
    assert queue.get_batch(1, 0)[0].start_sample == 0
    thread.join(2)
    assert not thread.is_alive() and queue.dropped == 0


def test_close_wakes_an_idle_getter():
    queue = WindowQueue(2)
    threading.Timer(0.1, queue.close).start()
    started = time.monotonic()
    assert queue.get_batch(1, 5.0) == []
    assert time.monotonic() - started < 2


@dataclass
class _Candidate:
    caption: str
    score: float


class SlowIdentityEngine:
    """A real, deterministic engine stand-in for the queueing logic only: the captioning model is
    built elsewhere and is not needed to check that an engine slower than capture makes the queue
    drop its oldest windows and that pending windows are batched. Its "caption" is the window's
    index so the test can see exactly which windows were processed."""

    model_id, backend, sample_rate = "identity", "cpu", 16000

    def __init__(self, seconds_per_batch: float):
        self.seconds_per_batch = seconds_per_batch
        self.batch_sizes: list[int] = []

    def caption(self, windows: np.ndarray, steps: int, candidates: int):
        self.batch_sizes.append(len(windows))
        time.sleep(self.seconds_per_batch)
        return [[_Candidate(str(int(w[0])), -float(k)) for k in range(candidates)] for w in windows]


def test_slow_engine_overload_drops_oldest_capture_never_waits():
    engine = SlowIdentityEngine(0.05)
    queue = WindowQueue(2)
    results = []
    worker = InferenceWorker(engine, queue, steps=1, candidates=2, max_batch=2, on_result=results.append)
    worker.start()
    put_times = []
    for i in range(40):  # capture produces a window every 5 ms: 10x faster than the engine
        started = time.perf_counter()
        queue.put(window(i))
        put_times.append(time.perf_counter() - started)
        time.sleep(0.005)
    queue.close()
    worker.join(5)
    done = [int(r.candidates[0][0]) for r in results]
    assert max(put_times) < 0.05  # a put never waited for the engine
    assert queue.dropped > 0 and len(done) + queue.dropped == 40  # every window captioned or counted
    assert done == sorted(done) and done[-1] == 39  # order kept, and the newest window is never the one lost
    assert max(engine.batch_sizes) == 2 and len(results[0].candidates) == 2
    assert worker.busy_s > 0


def test_engine_that_keeps_failing_stops_the_worker():
    class Broken:
        model_id, backend, sample_rate = "broken", "cpu", 16000

        def caption(self, windows, steps, candidates):
            raise RuntimeError("CUDA error: device lost")

    queue = WindowQueue(8)
    for i in range(5):
        queue.put(window(i))
    worker = InferenceWorker(Broken(), queue, steps=1, candidates=1, max_batch=1, on_result=lambda r: None)
    worker.start()
    worker.join(5)
    assert not worker.is_alive() and isinstance(worker.error, RuntimeError) and worker.failures == 3
