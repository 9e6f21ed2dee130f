"""Workers run on threads for the tests."""
import threading
import time

from libmdp.majortomo import Worker, WorkerRequestsIterator


class EchoWorker:
    """A Majortomo-API worker on a thread: echoes, `partials` PARTIALs first,
    sleeping `delay` seconds per request; counts what it handled."""

    def __init__(self, url, service="echo", delay=0.0, partials=0, **kw):
        kw.setdefault("heartbeat_interval", 0.2)
        kw.setdefault("heartbeat_timeout", 0.6)
        self.worker = Worker(url, service, **kw)
        self.iter = WorkerRequestsIterator(self.worker)
        self.delay = delay
        self.partials = partials
        self.handled = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        for request in self.iter:
            self.handled.append(request)
            if self.delay:
                time.sleep(self.delay)
            for i in range(self.partials):
                self.iter.send_reply_partial([b"part%d" % i])
            self.iter.send_reply_final(request)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.iter.stop()
        self.thread.join(10)
        assert not self.thread.is_alive()
