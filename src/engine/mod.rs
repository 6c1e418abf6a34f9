//! The pure decision engine: lexing, statement shapes, pinned-setting checks (and, later,
//! parsing, resolution, decisions and rewrites). No I/O happens under this module.

pub mod lexing;
pub mod pinned;
pub mod shape;
