"""Shared test support: real services on loopback and base images built by third-party tools.

Modules:

- `ports`: free TCP ports on 127.0.0.1.
- `process`: ManagedProcess, the start/wait/stop of a service process on a free port
  (RedisServer, RegistryServer and S3Server build on it).
- `commands`: run skopeo, umoci and friends; a missing tool fails the test loudly.
- `scopes`: token scopes and the access policy a token issuer applies.
- `token`: TokenIssuer, the Docker token-auth server a test registry trusts
  (`token_http` is its HTTP layer).
- `registry`: RegistryServer, a `docker-registry serve` process (open, htpasswd or token).
- `images`: build the busybox base image with umoci and push it with skopeo.
"""
