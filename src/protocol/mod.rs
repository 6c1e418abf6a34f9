//! Wire framing and the few Postgres messages the proxy builds or inspects.
//!
//! Everything else crosses the proxy as opaque frames: a type byte, a length, and a body the
//! proxy never decodes.

pub mod backend;
pub mod frame;
pub mod frontend;
pub mod startup;

pub use frame::{FrameError, FrameHeader};
