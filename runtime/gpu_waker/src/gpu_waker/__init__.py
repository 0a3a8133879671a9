"""gpu-waker: owns the power state of the AWS GPU worker (worker mode) or of the whole AWS side
(gate mode).

Worker mode (on the AWS control node): a token-checked HTTP reverse proxy in front of Ollama
that starts the stopped worker when a request arrives (one start for any number of waiting
requests), holds the requests for a bounded time while the node comes back, then streams the
responses through unchanged; a reconcile loop that also wakes the worker for Pending GPU pods,
stops it when nothing has used it for ``idle_stop_minutes``, and, when configured, stops the
control node itself once the worker has been stopped and unused for ``sleep_after_minutes``.

Gate mode (in the homelab): the same proxy in front of the AWS-side gpu-waker; it starts the
sleeping control node (and the GPU worker beside it) on demand, with IAM Roles Anywhere
credentials, and never stops anything.
"""
