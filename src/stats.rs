//! Placeholder: filled in by the wire-core work.
