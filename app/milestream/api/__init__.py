"""The worker's HTTP API: a customer's progress and history, leaderboards, enrolment and
definitions commands, with an OpenAPI document generated from the models (docs/api.md)."""
