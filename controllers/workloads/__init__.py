"""The workload controllers: Deployment, ReplicaSet, StatefulSet, DaemonSet, Job, CronJob."""
