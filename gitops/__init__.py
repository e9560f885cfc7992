"""The GitOps engine: applications, sources, render, diff, sync, health, the app
controller, the web server and dashboard, and the CLI."""
