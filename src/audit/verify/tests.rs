//! Verify tests.
use super::*;
