//! The condition language: tokens, the syntax tree and a recursive-descent parser.
//!
//! ```text
//! condition  := or
//! or         := and ( "OR" and )*
//! and        := primary ( "AND" primary )*        (AND binds tighter than OR)
//! primary    := "(" or ")" | comparison
//! comparison := operand ( "<" | "<=" | "==" | "!=" | ">=" | ">" ) operand
//! operand    := entity "." device "." property
//!             | DOUBLE(number) | INTEGER(whole) | LONG(whole) | STRING("text") | BOOLEAN(true|false)
//!             | number | true | false | "text"          (untyped: typed by the other side)
//! ```
//!
//! Offsets are in characters of the condition text, so a caller can place them in its file.

use std::fmt;

/// A character range of the condition text: `start` inclusive, `end` exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Span {
    /// First character, 0-based.
    pub start: usize,
    /// One past the last character.
    pub end: usize,
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `>=`
    Ge,
    /// `>`
    Gt,
}

impl CmpOp {
    /// The operator as written.
    pub fn as_str(&self) -> &'static str {
        match self {
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
            CmpOp::Ge => ">=",
            CmpOp::Gt => ">",
        }
    }

    /// Whether the operator orders its operands (only numbers can be ordered).
    pub fn is_ordering(&self) -> bool {
        !matches!(self, CmpOp::Eq | CmpOp::Ne)
    }
}

/// A constant in a condition.
#[derive(Debug, Clone)]
pub enum Literal {
    /// `DOUBLE(43.5)`
    Double(f64),
    /// `INTEGER(3)`
    Integer(i64),
    /// `LONG(3)`
    Long(i64),
    /// `STRING("x")`, or a bare `"x"`
    String(String),
    /// `BOOLEAN(true)`, or a bare `true`
    Boolean(bool),
    /// A bare number such as `30`: typed by the property it is compared with.
    Number(f64),
}

// Equality by bits so that rules (and the config holding them) can be `Eq`: a literal is a piece
// of configuration compared for change, not a number compared for value.
impl PartialEq for Literal {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Literal::Double(a), Literal::Double(b)) | (Literal::Number(a), Literal::Number(b)) => {
                a.to_bits() == b.to_bits()
            }
            (Literal::Integer(a), Literal::Integer(b)) | (Literal::Long(a), Literal::Long(b)) => {
                a == b
            }
            (Literal::String(a), Literal::String(b)) => a == b,
            (Literal::Boolean(a), Literal::Boolean(b)) => a == b,
            _ => false,
        }
    }
}
impl Eq for Literal {}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Literal::Double(v) => write!(f, "DOUBLE({v})"),
            Literal::Integer(v) => write!(f, "INTEGER({v})"),
            Literal::Long(v) => write!(f, "LONG({v})"),
            Literal::String(v) => write!(f, "STRING({v:?})"),
            Literal::Boolean(v) => write!(f, "BOOLEAN({v})"),
            Literal::Number(v) => write!(f, "{v}"),
        }
    }
}

/// `<entity>.<device>.<property>`: one property of one device placed in the hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PropertyRef {
    /// Entity id from `config_hierarchy.json`.
    pub entity: String,
    /// Component name (or device id) under that entity.
    pub device: String,
    /// Property name of the device.
    pub property: String,
    /// The device id the reference resolves to; set by [`crate::check`], `None` before.
    pub iot_device_id: Option<String>,
}

impl fmt::Display for PropertyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.entity, self.device, self.property)
    }
}

/// One side of a comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operand {
    /// A device property (boxed: four names are much larger than a literal).
    Property(Box<PropertyRef>),
    /// A constant.
    Literal(Literal),
}

impl fmt::Display for Operand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Operand::Property(p) => p.fmt(f),
            Operand::Literal(l) => l.fmt(f),
        }
    }
}

/// A condition's syntax tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// `left op right`
    Compare {
        /// Left operand and where it is.
        left: (Operand, Span),
        /// The operator.
        op: CmpOp,
        /// Right operand and where it is.
        right: (Operand, Span),
    },
    /// Both hold.
    And(Box<Expr>, Box<Expr>),
    /// Either holds.
    Or(Box<Expr>, Box<Expr>),
}

impl Expr {
    /// Every property reference, left to right.
    pub fn properties(&self) -> Vec<&PropertyRef> {
        let mut out = Vec::new();
        self.walk(&mut |o| {
            if let Operand::Property(p) = o {
                out.push(&**p);
            }
        });
        out
    }

    fn walk<'a>(&'a self, f: &mut impl FnMut(&'a Operand)) {
        match self {
            Expr::Compare { left, right, .. } => {
                f(&left.0);
                f(&right.0);
            }
            Expr::And(a, b) | Expr::Or(a, b) => {
                a.walk(f);
                b.walk(f);
            }
        }
    }

    /// Mutable access to every property reference (to resolve them).
    pub(crate) fn properties_mut(&mut self, f: &mut impl FnMut(&mut PropertyRef, Span)) {
        match self {
            Expr::Compare { left, right, .. } => {
                for (o, span) in [left, right] {
                    if let Operand::Property(p) = o {
                        f(p, *span);
                    }
                }
            }
            Expr::And(a, b) | Expr::Or(a, b) => {
                a.properties_mut(f);
                b.properties_mut(f);
            }
        }
    }
}

/// A condition that does not parse: where, and what was expected there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// Character offset in the condition text.
    pub at: usize,
    /// What the parser expected, e.g. ``a comparison operator (< <= == != >= >)``.
    pub expected: String,
    /// What it found instead, e.g. `` `=` `` or `the end of the condition`.
    pub found: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "expected {}, found {}", self.expected, self.found)
    }
}

impl std::error::Error for ParseError {}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    /// A run of name/number characters: a reference, a number, a keyword or a type name.
    Word(String),
    /// A double-quoted string, unescaped.
    Str(String),
    Op(CmpOp),
    LParen,
    RParen,
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::Word(w) => format!("`{w}`"),
            Tok::Str(s) => format!("the string {s:?}"),
            Tok::Op(o) => format!("`{}`", o.as_str()),
            Tok::LParen => "`(`".to_string(),
            Tok::RParen => "`)`".to_string(),
        }
    }
}

const END: &str = "the end of the condition";
const OPERAND: &str =
    "a property `<entity>.<device>.<property>` or a value such as DOUBLE(43), INTEGER(3), STRING(\"x\"), BOOLEAN(true)";
const OPERATOR: &str = "a comparison operator (< <= == != >= >)";

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '+' | ':' | '/')
}

fn lex(text: &str) -> Result<Vec<(Tok, Span)>, ParseError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let tok = match c {
            '(' => {
                i += 1;
                Tok::LParen
            }
            ')' => {
                i += 1;
                Tok::RParen
            }
            '<' | '>' | '=' | '!' => {
                let next = chars.get(i + 1).copied();
                let (op, len) = match (c, next) {
                    ('<', Some('=')) => (CmpOp::Le, 2),
                    ('>', Some('=')) => (CmpOp::Ge, 2),
                    ('=', Some('=')) => (CmpOp::Eq, 2),
                    ('!', Some('=')) => (CmpOp::Ne, 2),
                    ('<', _) => (CmpOp::Lt, 1),
                    ('>', _) => (CmpOp::Gt, 1),
                    _ => {
                        return Err(ParseError {
                            at: start,
                            expected: format!("{OPERATOR} (equality is `==`)"),
                            found: format!("`{c}`"),
                        })
                    }
                };
                i += len;
                Tok::Op(op)
            }
            '"' => {
                i += 1;
                let mut s = String::new();
                loop {
                    match chars.get(i) {
                        None => {
                            return Err(ParseError {
                                at: i,
                                expected: "`\"` closing the string opened here".to_string(),
                                found: END.to_string(),
                            })
                        }
                        Some('"') => {
                            i += 1;
                            break;
                        }
                        Some('\\') => {
                            match chars.get(i + 1) {
                                Some(e @ ('"' | '\\')) => s.push(*e),
                                other => {
                                    return Err(ParseError {
                                        at: i + 1,
                                        expected: "`\\\"` or `\\\\` after a backslash".to_string(),
                                        found: other.map_or(END.to_string(), |c| format!("`{c}`")),
                                    })
                                }
                            }
                            i += 2;
                        }
                        Some(c) => {
                            s.push(*c);
                            i += 1;
                        }
                    }
                }
                Tok::Str(s)
            }
            c if is_word_char(c) => {
                while i < chars.len() && is_word_char(chars[i]) {
                    i += 1;
                }
                Tok::Word(chars[start..i].iter().collect())
            }
            other => {
                return Err(ParseError {
                    at: start,
                    expected: format!("{OPERAND}, `(`, `)`, AND, OR or {OPERATOR}"),
                    found: format!("`{other}`"),
                })
            }
        };
        out.push((tok, Span { start, end: i }));
    }
    Ok(out)
}

struct Parser {
    toks: Vec<(Tok, Span)>,
    at: usize,
    /// Length of the text in characters (where "the end" is).
    len: usize,
}

impl Parser {
    fn peek(&self) -> Option<&(Tok, Span)> {
        self.toks.get(self.at)
    }

    fn here(&self) -> usize {
        self.peek().map_or(self.len, |(_, s)| s.start)
    }

    fn found(&self) -> String {
        self.peek().map_or(END.to_string(), |(t, _)| t.describe())
    }

    fn error(&self, expected: impl Into<String>) -> ParseError {
        ParseError {
            at: self.here(),
            expected: expected.into(),
            found: self.found(),
        }
    }

    fn keyword(&mut self, kw: &str) -> bool {
        if matches!(self.peek(), Some((Tok::Word(w), _)) if w == kw) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn or(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.and()?;
        while self.keyword("OR") {
            let right = self.and()?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.primary()?;
        while self.keyword("AND") {
            let right = self.primary()?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn primary(&mut self) -> Result<Expr, ParseError> {
        if matches!(self.peek(), Some((Tok::LParen, _))) {
            let open = self.here();
            self.at += 1;
            let inner = self.or()?;
            if matches!(self.peek(), Some((Tok::RParen, _))) {
                self.at += 1;
                return Ok(inner);
            }
            return Err(self.error(format!(
                "`)` closing the `(` at character {}, or AND / OR",
                open + 1
            )));
        }
        let left = self.operand()?;
        let op = match self.peek() {
            Some((Tok::Op(op), _)) => *op,
            _ => return Err(self.error(OPERATOR)),
        };
        self.at += 1;
        let right = self.operand()?;
        Ok(Expr::Compare { left, op, right })
    }

    fn operand(&mut self) -> Result<(Operand, Span), ParseError> {
        let Some((tok, span)) = self.peek().cloned() else {
            return Err(self.error(OPERAND));
        };
        match tok {
            Tok::Str(s) => {
                self.at += 1;
                Ok((Operand::Literal(Literal::String(s)), span))
            }
            Tok::Word(w) => {
                self.at += 1;
                if w == "AND" || w == "OR" {
                    self.at -= 1;
                    return Err(self.error(OPERAND));
                }
                if w == "true" || w == "false" {
                    return Ok((Operand::Literal(Literal::Boolean(w == "true")), span));
                }
                if let Some(ty) = TypeName::parse(&w) {
                    return self.typed(ty, span);
                }
                if let Some(n) = number(&w) {
                    return Ok((Operand::Literal(Literal::Number(n)), span));
                }
                let parts: Vec<&str> = w.split('.').collect();
                if parts.len() == 3 && parts.iter().all(|p| !p.is_empty()) {
                    return Ok((
                        Operand::Property(Box::new(PropertyRef {
                            entity: parts[0].to_string(),
                            device: parts[1].to_string(),
                            property: parts[2].to_string(),
                            iot_device_id: None,
                        })),
                        span,
                    ));
                }
                Err(ParseError {
                    at: span.start,
                    expected: OPERAND.to_string(),
                    found: format!(
                        "`{w}` ({} dot-separated part{}, a property needs 3)",
                        parts.len(),
                        if parts.len() == 1 { "" } else { "s" }
                    ),
                })
            }
            _ => Err(self.error(OPERAND)),
        }
    }

    /// `TYPE(value)` after its type name.
    fn typed(&mut self, ty: TypeName, name: Span) -> Result<(Operand, Span), ParseError> {
        if !matches!(self.peek(), Some((Tok::LParen, _))) {
            return Err(self.error(format!("`(` after {}", ty.as_str())));
        }
        self.at += 1;
        let Some((tok, span)) = self.peek().cloned() else {
            return Err(self.error(ty.expects()));
        };
        let literal = match (ty, &tok) {
            (TypeName::Double, Tok::Word(w)) => number(w).map(Literal::Double),
            (TypeName::Integer, Tok::Word(w)) => w
                .parse::<i64>()
                .ok()
                .filter(|n| i32::try_from(*n).is_ok())
                .map(Literal::Integer),
            (TypeName::Long, Tok::Word(w)) => w.parse::<i64>().ok().map(Literal::Long),
            (TypeName::Boolean, Tok::Word(w)) if w == "true" || w == "false" => {
                Some(Literal::Boolean(w == "true"))
            }
            (TypeName::String, Tok::Str(s)) => Some(Literal::String(s.clone())),
            _ => None,
        };
        let Some(literal) = literal else {
            return Err(ParseError {
                at: span.start,
                expected: ty.expects().to_string(),
                found: tok.describe(),
            });
        };
        self.at += 1;
        let Some((Tok::RParen, close)) = self.peek().cloned() else {
            return Err(self.error(format!("`)` closing {}(", ty.as_str())));
        };
        self.at += 1;
        Ok((
            Operand::Literal(literal),
            Span {
                start: name.start,
                end: close.end,
            },
        ))
    }
}

/// A finite number as written in a condition (`30`, `-2.5`, `1e3`).
fn number(w: &str) -> Option<f64> {
    // Rust's float parser also takes `inf` and `nan`, which are not numbers in a condition.
    let first = w.chars().next()?;
    if !(first.is_ascii_digit() || first == '-' || first == '+') {
        return None;
    }
    w.parse::<f64>().ok().filter(|n| n.is_finite())
}

#[derive(Debug, Clone, Copy)]
enum TypeName {
    Double,
    Integer,
    Long,
    String,
    Boolean,
}

impl TypeName {
    fn parse(w: &str) -> Option<TypeName> {
        Some(match w {
            "DOUBLE" => TypeName::Double,
            "INTEGER" => TypeName::Integer,
            "LONG" => TypeName::Long,
            "STRING" => TypeName::String,
            "BOOLEAN" => TypeName::Boolean,
            _ => return None,
        })
    }

    fn as_str(&self) -> &'static str {
        match self {
            TypeName::Double => "DOUBLE",
            TypeName::Integer => "INTEGER",
            TypeName::Long => "LONG",
            TypeName::String => "STRING",
            TypeName::Boolean => "BOOLEAN",
        }
    }

    fn expects(&self) -> &'static str {
        match self {
            TypeName::Double => "a number inside DOUBLE(..)",
            TypeName::Integer => "a whole number from -2147483648 to 2147483647 inside INTEGER(..)",
            TypeName::Long => "a whole number inside LONG(..)",
            TypeName::String => "a double-quoted string inside STRING(..)",
            TypeName::Boolean => "true or false inside BOOLEAN(..)",
        }
    }
}

/// Parses a condition. Errors say where (a character offset) and what was expected.
pub fn parse(text: &str) -> Result<Expr, ParseError> {
    let toks = lex(text)?;
    let mut p = Parser {
        toks,
        at: 0,
        len: text.chars().count(),
    };
    let expr = p.or()?;
    if p.peek().is_some() {
        return Err(p.error("AND, OR or the end of the condition"));
    }
    Ok(expr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn and_binds_tighter_than_or() {
        let e = parse("a.b.c > 1 OR a.b.c < 0 AND a.b.d == 2").expect("parses");
        let Expr::Or(_, right) = e else {
            panic!("top is OR: {e:?}")
        };
        assert!(matches!(*right, Expr::And(_, _)));
    }

    #[test]
    fn parentheses_override_precedence() {
        let e = parse("(a.b.c > 1 OR a.b.c < 0) AND a.b.d == 2").expect("parses");
        let Expr::And(left, _) = e else {
            panic!("top is AND: {e:?}")
        };
        assert!(matches!(*left, Expr::Or(_, _)));
    }

    #[test]
    fn typed_literal_span_covers_the_whole_literal() {
        let Expr::Compare { right, .. } = parse("a.b.c == DOUBLE(30)").expect("parses") else {
            panic!("compare")
        };
        assert_eq!(right.1, Span { start: 9, end: 19 });
        assert_eq!(right.0, Operand::Literal(Literal::Double(30.0)));
    }
}
