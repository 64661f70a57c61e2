"""DescribeBatcher: concurrent describes of single export tasks answered by one AWS call.

A refresh of many exports reads them all at once, and many creates poll at
once; each would otherwise be one DescribeExportImageTasks call.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

BATCH_WINDOW = 0.2
BATCH_WINDOW_ENV = "EXPORT_IMAGE_PROVIDER_BATCH_WINDOW"  # seconds; 0 turns batching off (benchmark baseline)


class DescribeBatcher:
    """Coalesces concurrent describes of single tasks into one call.

    A caller whose answer is not in yet becomes the fetcher when no fetch is in
    flight: it waits ``window`` seconds for company, then describes every id
    pending. Callers arriving during a fetch form the next batch.
    """

    def __init__(self, fetch: Callable[[list[str]], dict[str, Any]], window: float = BATCH_WINDOW) -> None:
        self._fetch = fetch
        self._window = window
        self._changed = threading.Condition()
        self._pending: dict[str, list[Future[Any]]] = {}
        self._fetching = False
        self.calls = 0

    def describe(self, task_id: str) -> Any:
        answer: Future[Any] = Future()
        with self._changed:
            self._pending.setdefault(task_id, []).append(answer)
        while True:
            with self._changed:
                while self._fetching and not answer.done():
                    self._changed.wait()
                if answer.done():
                    return answer.result()
                self._fetching = True
            try:
                time.sleep(self._window)
                with self._changed:
                    batch, self._pending = self._pending, {}
                self._answer(batch)
            finally:
                with self._changed:
                    self._fetching = False
                    self._changed.notify_all()

    def _answer(self, batch: dict[str, list[Future[Any]]]) -> None:
        self.calls += 1
        try:
            found = self._fetch(list(batch))
        except Exception as error:  # noqa: BLE001 - every caller of the batch gets it
            for answers in batch.values():
                for answer in answers:
                    answer.set_exception(error)
            return
        for task_id, answers in batch.items():
            for answer in answers:
                answer.set_result(found.get(task_id))
