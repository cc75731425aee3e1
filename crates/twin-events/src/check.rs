//! Type checking of a parsed condition against the twin's devices.
//!
//! Numbers compare with numbers: a DOUBLE property may be compared with `INTEGER(3)` or `30`,
//! an INTEGER property with `DOUBLE(2.5)` (the comparison is numeric; nothing is rounded).
//! Strings and booleans compare only with their own type and only with `==` / `!=`: ordering
//! strings is rarely what a rule means, and booleans have no order.

use std::fmt;

use crate::syntax::{Expr, Literal, Operand, PropertyRef, Span};

/// The value types of device properties (the `dataType` of `config_iot_devices.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    /// `DOUBLE`
    Double,
    /// `INTEGER`
    Integer,
    /// `LONG`
    Long,
    /// `BOOLEAN`
    Boolean,
    /// `STRING`
    String,
}

impl ValueType {
    /// The spelling in the config files.
    pub fn as_str(&self) -> &'static str {
        match self {
            ValueType::Double => "DOUBLE",
            ValueType::Integer => "INTEGER",
            ValueType::Long => "LONG",
            ValueType::Boolean => "BOOLEAN",
            ValueType::String => "STRING",
        }
    }

    fn family(&self) -> Family {
        match self {
            ValueType::Double | ValueType::Integer | ValueType::Long => Family::Number,
            ValueType::Boolean => Family::Boolean,
            ValueType::String => Family::String,
        }
    }
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Number,
    Boolean,
    String,
}

impl Family {
    fn literals(&self) -> &'static str {
        match self {
            Family::Number => "DOUBLE(..), INTEGER(..), LONG(..) or a bare number",
            Family::Boolean => "BOOLEAN(true|false) or a bare true/false",
            Family::String => "STRING(\"..\") or a bare \"..\"",
        }
    }
}

/// A reference resolved against the twin: the device it names and the property's type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The device id (`config_iot_devices.json` `id`).
    pub iot_device_id: String,
    /// The property's `dataType`.
    pub value_type: ValueType,
}

/// What a condition may name: implemented by the config loader over its hierarchy and devices.
pub trait Schema {
    /// Resolves `<entity>.<device>.<property>`, or says in words what is unknown and what exists
    /// (e.g. ``unknown entity `room-9`; entities are room-1, room-2``). `Ok(None)`: cannot tell,
    /// because the file that would say is itself broken (and reported); the reference is left
    /// unresolved and unchecked rather than reported twice.
    fn resolve(&self, reference: &PropertyRef) -> Result<Option<Resolved>, String>;
}

/// A condition that parses but names something unknown or compares unlike types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckError {
    /// Where in the condition text.
    pub span: Span,
    /// What is wrong and what is allowed.
    pub message: String,
}

impl fmt::Display for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// The type of one side: a property's declared type or a literal's.
#[derive(Debug, Clone, Copy)]
enum Side {
    Typed(ValueType),
    /// A bare number, typed by the other side.
    Number,
    Unresolved,
}

impl Side {
    fn family(&self) -> Option<Family> {
        match self {
            Side::Typed(t) => Some(t.family()),
            Side::Number => Some(Family::Number),
            Side::Unresolved => None,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Side::Typed(t) => t.as_str(),
            Side::Number => "a number",
            Side::Unresolved => "unknown",
        }
    }
}

fn literal_type(l: &Literal) -> Side {
    match l {
        Literal::Double(_) => Side::Typed(ValueType::Double),
        Literal::Integer(_) => Side::Typed(ValueType::Integer),
        Literal::Long(_) => Side::Typed(ValueType::Long),
        Literal::String(_) => Side::Typed(ValueType::String),
        Literal::Boolean(_) => Side::Typed(ValueType::Boolean),
        Literal::Number(_) => Side::Number,
    }
}

/// Resolves every property of `expr` (filling [`PropertyRef::iot_device_id`]) and checks each
/// comparison's types; returns every problem found, in text order.
pub fn check(expr: &mut Expr, schema: &dyn Schema) -> Vec<CheckError> {
    let mut errors = Vec::new();
    expr.properties_mut(&mut |p, span| match schema.resolve(p) {
        Ok(Some(r)) => p.iot_device_id = Some(r.iot_device_id),
        Ok(None) => {}
        Err(message) => errors.push(CheckError { span, message }),
    });
    compare_types(expr, schema, &mut errors);
    errors.sort_by_key(|e| e.span.start);
    errors
}

fn compare_types(expr: &Expr, schema: &dyn Schema, errors: &mut Vec<CheckError>) {
    match expr {
        Expr::And(a, b) | Expr::Or(a, b) => {
            compare_types(a, schema, errors);
            compare_types(b, schema, errors);
        }
        Expr::Compare { left, op, right } => {
            let side = |o: &Operand| match o {
                Operand::Literal(l) => literal_type(l),
                Operand::Property(p) => schema
                    .resolve(p)
                    .ok()
                    .flatten()
                    .map_or(Side::Unresolved, |r| Side::Typed(r.value_type)),
            };
            let whole = Span {
                start: left.1.start,
                end: right.1.end,
            };
            if matches!(
                (&left.0, &right.0),
                (Operand::Literal(_), Operand::Literal(_))
            ) {
                errors.push(CheckError {
                    span: whole,
                    message: format!(
                        "`{} {} {}` compares two constants; one side must be a property `<entity>.<device>.<property>`",
                        left.0, op.as_str(), right.0
                    ),
                });
                return;
            }
            let (l, r) = (side(&left.0), side(&right.0));
            let (Some(lf), Some(rf)) = (l.family(), r.family()) else {
                // An unresolved side was reported already; its type is unknown.
                return;
            };
            if lf != rf {
                // Point at the literal when there is one: that is what the user would change.
                let (at, known) = match (&left.0, &right.0) {
                    (Operand::Literal(_), _) => (left.1, lf_of(r, lf)),
                    _ => (right.1, lf_of(l, rf)),
                };
                errors.push(CheckError {
                    span: at,
                    message: format!(
                        "`{}` is {} but `{}` is {}; a {} compares with {}",
                        left.0,
                        l.name(),
                        right.0,
                        r.name(),
                        known.0,
                        known.1.literals()
                    ),
                });
                return;
            }
            if op.is_ordering() && lf != Family::Number {
                errors.push(CheckError {
                    span: whole,
                    message: format!(
                        "`{}` orders {} values; {} values compare only with == or !=",
                        op.as_str(),
                        l.name(),
                        l.name()
                    ),
                });
            }
        }
    }
}

/// The side whose type decides, with its family (for the "compares with" hint).
fn lf_of(side: Side, fallback: Family) -> (&'static str, Family) {
    (side.name(), side.family().unwrap_or(fallback))
}
