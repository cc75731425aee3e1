//! Event rules of a twin (`config_events.json`, the established tool's format): an array of
//! `{condition, action}` where a condition compares `<entity>.<device>.<property>` with a typed
//! literal (`DOUBLE(43)`, `INTEGER(3)`, `LONG(3)`, `STRING("x")`, `BOOLEAN(true)`) or another
//! property, combined with `AND` / `OR` (AND binds tighter; parentheses group).
//!
//! Pure logic only: [`parse`] with positioned errors, [`check`] against the twin's devices,
//! [`evaluate`] against the latest values, and [`decide`] for the per-rule firing state. Loading
//! the file (and placing errors at line:column) is twin-config's; running actions is the
//! evaluator function's.

mod check;
mod eval;
mod rule;
mod syntax;

pub use check::{check, CheckError, Resolved, Schema, ValueType};
pub use eval::evaluate;
pub use rule::{decide, Action, Condition, Decision, Feedback, Fire, Rule};
pub use syntax::{parse, CmpOp, Expr, Literal, Operand, ParseError, PropertyRef, Span};
