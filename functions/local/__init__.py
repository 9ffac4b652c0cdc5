"""The local stack's runtime (broker, scheduler, CR store, supervisor): see docs/local-stack.md."""
