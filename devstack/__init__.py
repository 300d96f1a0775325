"""Local-only tooling, never in a service image: the local stack (`python -m devstack`, what
`make run` runs: embedded parts and the fleet supervisor), the in-process store behind
`MONGO_URI=memory://`, the SMTP sink and its mail page, the compose check, the lock reader and
the API-document writer. The runtime library is `shared/`; the operator CLI is `fleet/`."""
