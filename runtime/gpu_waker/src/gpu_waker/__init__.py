"""gpu-waker: owns the power state of the AWS GPU worker.

A token-checked HTTP reverse proxy in front of Ollama that starts the stopped worker when a
request arrives (one start for any number of waiting requests), holds the requests for a bounded
time while the node comes back, then streams the responses through unchanged; a reconcile loop
that also wakes the worker for Pending GPU pods and stops it when nothing has used it for
``idle_stop_minutes``.
"""
