"""Reference implementations vendored with their licences (tests only): see each file's header."""
