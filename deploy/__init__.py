"""Deployment helpers; ``deploy.local_kafka`` runs a local broker (also a script)."""
