//! An embedded emulator of the InferenceKey platform. To be implemented.
