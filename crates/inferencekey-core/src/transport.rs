//! HTTP transport: one pooled reqwest client, auth header, retries, timeouts. To be implemented.
