"""Developer tools that generate checked-in files; not in the image."""
