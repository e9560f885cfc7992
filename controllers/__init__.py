"""The embedded control plane: a small Kubernetes (store, API machinery, REST facade,
controller runtime, scheduler, workload controllers, simulated kubelet) and the cluster
client every layer above uses to talk to any cluster."""
