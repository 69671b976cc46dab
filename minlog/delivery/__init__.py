"""Delivery: the outbox drained to MinLog2 in batches (`deliverer`), on background threads
(`worker`), under frozen policies (`policy`: retries and rate limits)."""
