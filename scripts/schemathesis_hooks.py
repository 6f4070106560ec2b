"""schemathesis hooks of scripts/schemathesis.sh.

The generator draws `Idempotency-Key` values from a small space ("0", "A", ...), so many
generated writes would reuse a key with another body and be answered 422, and the write
routes would be tested less with fresh data. Each key the fuzzing and stateful phases
generate is made unique here (a UUID keeps to the header's schema); the coverage phase's
boundary values pass as drawn, which is why schemathesis.toml expects 409 and 422 for the
writes. tests/api/idempotency.rs tests repeats and reuse.
"""

import uuid

import schemathesis


@schemathesis.hook
def map_headers(ctx, headers):
    if headers and "Idempotency-Key" in headers:
        headers["Idempotency-Key"] = str(uuid.uuid4())
    return headers
