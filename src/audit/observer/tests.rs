//! Observer tests.
use super::*;
