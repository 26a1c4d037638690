//! The adapter's typed config and its requests against a mock Google on 127.0.0.1.
