"""`finops demo` and `finops events generate`: sample APIs, seeded data and the event simulator; not in the image."""
