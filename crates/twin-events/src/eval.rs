//! Evaluation of a condition against the latest value of each property.
//!
//! A condition can be unknown: a property that has no value yet (or a value of the wrong JSON
//! type) makes its comparison unknown, and unknown propagates like SQL's three-valued logic
//! (`false AND unknown` is false, `true OR unknown` is true). An unknown condition never fires.

use std::cmp::Ordering;

use serde_json::Value;

use crate::syntax::{CmpOp, Expr, Literal, Operand, PropertyRef};

/// Evaluates `expr`; `latest` gives a property's latest value (`None`: no value yet).
pub fn evaluate(expr: &Expr, latest: &dyn Fn(&PropertyRef) -> Option<Value>) -> Option<bool> {
    match expr {
        Expr::And(a, b) => match (evaluate(a, latest), evaluate(b, latest)) {
            (Some(false), _) | (_, Some(false)) => Some(false),
            (Some(true), Some(true)) => Some(true),
            _ => None,
        },
        Expr::Or(a, b) => match (evaluate(a, latest), evaluate(b, latest)) {
            (Some(true), _) | (_, Some(true)) => Some(true),
            (Some(false), Some(false)) => Some(false),
            _ => None,
        },
        Expr::Compare { left, op, right } => {
            let value = |o: &Operand| match o {
                Operand::Literal(l) => Some(literal_value(l)),
                Operand::Property(p) => latest(p),
            };
            let ordering = compare(&value(&left.0)?, &value(&right.0)?)?;
            Some(match op {
                CmpOp::Lt => ordering == Ordering::Less,
                CmpOp::Le => ordering != Ordering::Greater,
                CmpOp::Eq => ordering == Ordering::Equal,
                CmpOp::Ne => ordering != Ordering::Equal,
                CmpOp::Ge => ordering != Ordering::Less,
                CmpOp::Gt => ordering == Ordering::Greater,
            })
        }
    }
}

fn literal_value(l: &Literal) -> Value {
    match l {
        Literal::Double(v) | Literal::Number(v) => serde_json::Number::from_f64(*v)
            .map(Value::Number)
            // The parser admits finite numbers only, which always convert.
            .unwrap_or(Value::Null),
        Literal::Integer(v) | Literal::Long(v) => Value::from(*v),
        Literal::String(s) => Value::String(s.clone()),
        Literal::Boolean(b) => Value::Bool(*b),
    }
}

/// Orders two values of the same kind; `None` for unlike kinds (a message with a string where
/// the device declares a number), which makes the comparison unknown rather than false.
fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            // Whole numbers compare exactly: LONG values beyond 2^53 lose digits as f64.
            (Some(i), Some(j)) => Some(i.cmp(&j)),
            _ => x.as_f64()?.partial_cmp(&y.as_f64()?),
        },
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        _ => None,
    }
}
