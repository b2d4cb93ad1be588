"""Events: something happened, and the subscriptions that turn it into runs.

- `event`: what an event is (type, data, source, time, id) and the checks every one passes.
- `store`: the events and their deliveries, in the same database as the checkpoints.
- `templates`: Jinja in its sandbox, for subscription filters, inputs and dedupe keys.
- `subscriptions`: the YAML files an operator writes, checked before anything runs.
- `routing`: an event -> one delivery per matching subscription (its input checked), once.
- `dispatcher`: `ensemble events run`: routes, starts runs (SQLite) or queues them
  (PostgreSQL), retries with backoff, dead-letters, watches folders.
- `watch`: a corpus folder whose new or changed documents are `document.changed` events.
- `announce`: the `run.done`, `run.waiting` and `run.failed` events a finished run publishes.
"""

DEFAULT_CONCURRENCY = 4
"""Runs at once in a SQLite dispatcher."""
DEFAULT_WATCH_INTERVAL = 2.0
"""Seconds between two scans of a watched folder."""
