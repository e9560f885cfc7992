"""The scheduler's parts: pod facts read once (podinfo), the node snapshot (cache), the
scheduling queue (queue), the filter and score plugins (plugins, interpod) and the cycle
that runs them (framework). `controllers/scheduler.py` wires them to the cluster."""
