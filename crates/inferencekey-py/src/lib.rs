//! The `inferencekey._native` module. To be implemented.
