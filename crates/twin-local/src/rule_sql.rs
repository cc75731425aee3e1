//! The subset of the IoT rules SQL (version 2016-03-23) that deployed rules use, parsed for real
//! and evaluated on each message as IoT Core would:
//! `SELECT <list> FROM '<topic filter>' [WHERE <condition>]`, the list holding `*`, field paths
//! (`a`, `a.b`) with an optional `AS`, and `topic()`, `topic(n)`, `clientid()`, `timestamp()`
//! with `AS`; the condition comparisons (`= <> != < <= > >=`) of fields, literals and those
//! functions, combined with `AND`, `OR` and parentheses. Anything else is an error that names
//! its position, so a rule the local data plane cannot apply is reported, never half-applied.

use serde_json::{Map, Number, Value};

/// Why a rule's SQL cannot be applied locally: the 1-based character position and what is there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rule SQL at position {position}: {message} (the local rule engine supports SELECT */fields/topic()/clientid()/timestamp() AS ... FROM '<filter>' [WHERE comparisons with AND/OR]; change the rule or apply it on AWS)")]
pub struct SqlError {
    /// 1-based character position of the offending construct.
    pub position: usize,
    /// What was found there and what was expected.
    pub message: String,
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    /// `=`
    Eq,
    /// `<>` or `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

/// A built-in function of the supported subset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Function {
    /// `topic()` (the whole topic) or `topic(n)` (its n-th `/` segment, 1-based).
    Topic(Option<usize>),
    /// `clientid()`: the publishing client's id.
    ClientId,
    /// `timestamp()`: milliseconds since the epoch when the rule engine handles the message.
    Timestamp,
}

/// A value in the SQL: a payload field path, a literal or a function call.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    /// A field path into the JSON payload (`a.b.c`).
    Field(Vec<String>),
    /// A literal (string, number, boolean, null).
    Literal(Value),
    /// A function call.
    Call(Function),
}

/// One entry of the SELECT list.
#[derive(Debug, Clone, PartialEq)]
pub enum SelectItem {
    /// `*`: every field of the payload.
    All,
    /// A value under a name (`AS`, or a field's last segment).
    Named {
        /// The value.
        value: Operand,
        /// The key in the output.
        name: String,
    },
}

/// A WHERE condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// `<operand> <op> <operand>`.
    Compare(Operand, CmpOp, Operand),
    /// `a AND b`.
    And(Box<Condition>, Box<Condition>),
    /// `a OR b`.
    Or(Box<Condition>, Box<Condition>),
}

/// A parsed rule statement.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleSql {
    /// The SELECT list, in order.
    pub select: Vec<SelectItem>,
    /// The FROM topic filter.
    pub from: String,
    /// The WHERE condition, if any.
    pub condition: Option<Condition>,
}

/// One message as the rule engine sees it.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    /// The topic it was published on.
    pub topic: &'a str,
    /// Its payload bytes.
    pub payload: &'a [u8],
    /// The publishing client's id, when known.
    pub client_id: Option<&'a str>,
    /// When the rule engine handles it (ms since the epoch).
    pub timestamp_ms: i64,
}

/// What the rule makes of one message.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The action receives this document.
    Deliver(Value),
    /// The WHERE condition is not true for it: no action.
    Skipped,
    /// The rule cannot produce a document the action accepts; the reason says why.
    Rejected(String),
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Num(Number),
    Star,
    Comma,
    Dot,
    LParen,
    RParen,
    Op(CmpOp),
    End,
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Ident(s) => format!("`{s}`"),
        Tok::Str(s) => format!("the string '{s}'"),
        Tok::Num(n) => format!("the number {n}"),
        Tok::Star => "`*`".into(),
        Tok::Comma => "`,`".into(),
        Tok::Dot => "`.`".into(),
        Tok::LParen => "`(`".into(),
        Tok::RParen => "`)`".into(),
        Tok::Op(_) => "a comparison operator".into(),
        Tok::End => "the end of the statement".into(),
    }
}

fn err(position: usize, message: impl Into<String>) -> SqlError {
    SqlError {
        position,
        message: message.into(),
    }
}

/// Splits the statement into tokens with their 1-based character positions.
fn lex(sql: &str) -> Result<Vec<(Tok, usize)>, SqlError> {
    let chars: Vec<char> = sql.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let pos = i + 1;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let single = match c {
            '*' => Some(Tok::Star),
            ',' => Some(Tok::Comma),
            '.' if !chars.get(i + 1).is_some_and(char::is_ascii_digit) => Some(Tok::Dot),
            '(' => Some(Tok::LParen),
            ')' => Some(Tok::RParen),
            '=' => Some(Tok::Op(CmpOp::Eq)),
            _ => None,
        };
        if let Some(t) = single {
            out.push((t, pos));
            i += 1;
            continue;
        }
        match c {
            '<' | '>' | '!' => {
                let next = chars.get(i + 1).copied();
                let (op, len) = match (c, next) {
                    ('<', Some('>')) => (CmpOp::Ne, 2),
                    ('<', Some('=')) => (CmpOp::Le, 2),
                    ('<', _) => (CmpOp::Lt, 1),
                    ('>', Some('=')) => (CmpOp::Ge, 2),
                    ('>', _) => (CmpOp::Gt, 1),
                    ('!', Some('=')) => (CmpOp::Ne, 2),
                    _ => return Err(err(pos, "`!` is only supported as part of `!=`")),
                };
                out.push((Tok::Op(op), pos));
                i += len;
            }
            '\'' => {
                // '' inside a string is a quote, as in SQL.
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err(err(pos, "this string is never closed with `'`")),
                        Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                            s.push('\'');
                            i += 2;
                        }
                        Some('\'') => {
                            i += 1;
                            break;
                        }
                        Some(ch) => {
                            s.push(*ch);
                            i += 1;
                        }
                    }
                }
                out.push((Tok::Str(s), pos));
            }
            c if c.is_ascii_digit()
                || c == '.'
                || (c == '-'
                    && chars
                        .get(i + 1)
                        .is_some_and(|n| n.is_ascii_digit() || *n == '.')) =>
            {
                let start = i;
                i += 1;
                while chars
                    .get(i)
                    .is_some_and(|n| n.is_ascii_digit() || matches!(n, '.' | 'e' | 'E'))
                {
                    i += 1;
                }
                let text: String = chars[start..i].iter().collect();
                let num = serde_json::from_str::<Number>(&text)
                    .or_else(|_| {
                        // JSON rejects `.5` and `-.5`; SQL accepts them.
                        serde_json::from_str::<Number>(&text.replacen('.', "0.", 1))
                    })
                    .map_err(|_| err(pos, format!("`{text}` is not a number")))?;
                out.push((Tok::Num(num), pos));
            }
            c if c.is_alphabetic() || c == '_' => {
                let start = i;
                while chars
                    .get(i)
                    .is_some_and(|n| n.is_alphanumeric() || *n == '_')
                {
                    i += 1;
                }
                out.push((Tok::Ident(chars[start..i].iter().collect()), pos));
            }
            '"' | '`' => {
                return Err(err(
                    pos,
                    format!("quoted identifiers ({c}...{c}) are not supported"),
                ))
            }
            '+' | '-' | '/' | '%' | '|' => {
                return Err(err(pos, format!("the operator `{c}` is not supported")))
            }
            other => return Err(err(pos, format!("unexpected character `{other}`"))),
        }
    }
    out.push((Tok::End, chars.len() + 1));
    Ok(out)
}

/// Words that are SQL keywords, so never field names.
const RESERVED: &[&str] = &[
    "select", "from", "where", "as", "and", "or", "not", "in", "case", "when", "then", "else",
    "end", "like", "is", "between", "set", "null", "true", "false",
];

struct Parser {
    toks: Vec<(Tok, usize)>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> &Tok {
        &self.toks[self.at.min(self.toks.len() - 1)].0
    }

    fn pos(&self) -> usize {
        self.toks[self.at.min(self.toks.len() - 1)].1
    }

    fn bump(&mut self) -> (Tok, usize) {
        let t = self.toks[self.at.min(self.toks.len() - 1)].clone();
        self.at += 1;
        t
    }

    fn keyword(&self, word: &str) -> bool {
        matches!(self.peek(), Tok::Ident(s) if s.eq_ignore_ascii_case(word))
    }

    fn expect_keyword(&mut self, word: &str) -> Result<(), SqlError> {
        if self.keyword(word) {
            self.at += 1;
            Ok(())
        } else {
            Err(err(
                self.pos(),
                format!(
                    "expected {}, found {}",
                    word.to_uppercase(),
                    describe(self.peek())
                ),
            ))
        }
    }

    fn statement(&mut self) -> Result<RuleSql, SqlError> {
        if self.keyword("set") {
            return Err(err(self.pos(), "SET clauses are not supported"));
        }
        self.expect_keyword("select")?;
        let mut select = vec![self.select_item()?];
        while *self.peek() == Tok::Comma {
            self.at += 1;
            select.push(self.select_item()?);
        }
        self.expect_keyword("from")?;
        let from = match self.bump() {
            (Tok::Str(s), p) if s.is_empty() => return Err(err(p, "the topic filter is empty")),
            (Tok::Str(s), _) => s,
            (t, p) => {
                return Err(err(
                    p,
                    format!(
                        "expected the topic filter in quotes, found {}",
                        describe(&t)
                    ),
                ))
            }
        };
        let condition = if self.keyword("where") {
            self.at += 1;
            Some(self.or()?)
        } else {
            None
        };
        match self.peek() {
            Tok::End => Ok(RuleSql {
                select,
                from,
                condition,
            }),
            t => Err(err(
                self.pos(),
                format!("expected WHERE or the end, found {}", describe(t)),
            )),
        }
    }

    fn select_item(&mut self) -> Result<SelectItem, SqlError> {
        if *self.peek() == Tok::Star {
            self.at += 1;
            return Ok(SelectItem::All);
        }
        let pos = self.pos();
        let value = self.operand()?;
        let name = if self.keyword("as") {
            self.at += 1;
            match self.bump() {
                (Tok::Ident(s), _) if !RESERVED.contains(&s.to_ascii_lowercase().as_str()) => s,
                (t, p) => {
                    return Err(err(
                        p,
                        format!("expected a name after AS, found {}", describe(&t)),
                    ))
                }
            }
        } else {
            match &value {
                Operand::Field(path) => path.last().cloned().unwrap_or_default(),
                // IoT Core names these by position (`_1`, ...): a rule relying on that is
                // better written with AS, so it is refused rather than guessed.
                _ => {
                    return Err(err(
                        pos,
                        "a function or literal in SELECT needs `AS <name>`",
                    ))
                }
            }
        };
        Ok(SelectItem::Named { value, name })
    }

    fn or(&mut self) -> Result<Condition, SqlError> {
        let mut left = self.and()?;
        while self.keyword("or") {
            self.at += 1;
            left = Condition::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Condition, SqlError> {
        let mut left = self.primary()?;
        while self.keyword("and") {
            self.at += 1;
            left = Condition::And(Box::new(left), Box::new(self.primary()?));
        }
        Ok(left)
    }

    fn primary(&mut self) -> Result<Condition, SqlError> {
        if *self.peek() == Tok::LParen {
            self.at += 1;
            let inner = self.or()?;
            return match self.bump() {
                (Tok::RParen, _) => Ok(inner),
                (t, p) => Err(err(p, format!("expected `)`, found {}", describe(&t)))),
            };
        }
        let left = self.operand()?;
        let op = match self.bump() {
            (Tok::Op(op), _) => op,
            (t, p) => {
                return Err(err(
                    p,
                    format!(
                        "expected a comparison operator (= <> != < <= > >=), found {}",
                        describe(&t)
                    ),
                ))
            }
        };
        let right = self.operand()?;
        Ok(Condition::Compare(left, op, right))
    }

    fn operand(&mut self) -> Result<Operand, SqlError> {
        let (tok, pos) = self.bump();
        match tok {
            Tok::Str(s) => Ok(Operand::Literal(Value::String(s))),
            Tok::Num(n) => Ok(Operand::Literal(Value::Number(n))),
            Tok::Ident(word) => {
                let lower = word.to_ascii_lowercase();
                match lower.as_str() {
                    "true" => return Ok(Operand::Literal(Value::Bool(true))),
                    "false" => return Ok(Operand::Literal(Value::Bool(false))),
                    "null" => return Ok(Operand::Literal(Value::Null)),
                    _ => {}
                }
                if *self.peek() == Tok::LParen {
                    return self.call(&word, &lower, pos);
                }
                if RESERVED.contains(&lower.as_str()) {
                    return Err(err(
                        pos,
                        format!("the keyword {} is not supported here", word.to_uppercase()),
                    ));
                }
                let mut path = vec![word];
                while *self.peek() == Tok::Dot {
                    self.at += 1;
                    match self.bump() {
                        (Tok::Ident(s), _) => path.push(s),
                        (t, p) => {
                            return Err(err(
                                p,
                                format!("expected a field name after `.`, found {}", describe(&t)),
                            ))
                        }
                    }
                }
                if *self.peek() == Tok::Star {
                    // `a.*` or an arithmetic `*`: neither is in the subset.
                    return Err(err(self.pos(), "`*` is only supported alone in SELECT"));
                }
                Ok(Operand::Field(path))
            }
            t => Err(err(
                pos,
                format!(
                    "expected a field, a literal or a function, found {}",
                    describe(&t)
                ),
            )),
        }
    }

    fn call(&mut self, word: &str, lower: &str, pos: usize) -> Result<Operand, SqlError> {
        self.at += 1; // the `(`
        let function = match lower {
            "topic" => match self.bump() {
                (Tok::RParen, _) => return Ok(Operand::Call(Function::Topic(None))),
                (Tok::Num(n), p) => match n.as_u64() {
                    Some(k) if k >= 1 => Function::Topic(Some(k as usize)),
                    _ => {
                        return Err(err(
                            p,
                            format!("topic({n}): the segment must be a whole number from 1"),
                        ))
                    }
                },
                (t, p) => {
                    return Err(err(
                        p,
                        format!("topic() takes a segment number, found {}", describe(&t)),
                    ))
                }
            },
            "clientid" => Function::ClientId,
            "timestamp" => Function::Timestamp,
            _ => {
                return Err(err(
                    pos,
                    format!(
                        "the function {word}() is not supported (only topic, clientid, timestamp)"
                    ),
                ))
            }
        };
        match self.bump() {
            (Tok::RParen, _) => Ok(Operand::Call(function)),
            (t, p) => Err(err(
                p,
                format!("expected `)` closing {word}(, found {}", describe(&t)),
            )),
        }
    }
}

/// Parses a rule statement; unsupported syntax is an error naming its position.
pub fn parse(sql: &str) -> Result<RuleSql, SqlError> {
    let toks = lex(sql)?;
    Parser { toks, at: 0 }.statement()
}

/// The value of an operand for one message; `None` is IoT's Undefined.
fn value(op: &Operand, msg: &Message<'_>, payload: Option<&Value>) -> Option<Value> {
    match op {
        Operand::Literal(v) => Some(v.clone()),
        Operand::Field(path) => {
            let mut v = payload?;
            for key in path {
                v = v.as_object()?.get(key)?;
            }
            Some(v.clone())
        }
        Operand::Call(Function::Topic(None)) => Some(Value::String(msg.topic.to_string())),
        Operand::Call(Function::Topic(Some(n))) => msg
            .topic
            .split('/')
            .nth(n - 1)
            .map(|s| Value::String(s.to_string())),
        Operand::Call(Function::ClientId) => msg.client_id.map(|c| Value::String(c.to_string())),
        Operand::Call(Function::Timestamp) => Some(Value::from(msg.timestamp_ms)),
    }
}

/// A number, or a string that converts to one (IoT converts strings for numeric comparisons).
fn as_number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
}

fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        // 10 and 10.0 are the same Int under SQL version 2016-03-23.
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// A condition's value: `Some(bool)`, or `None` for Undefined (which is not true).
fn truth(c: &Condition, msg: &Message<'_>, payload: Option<&Value>) -> Option<bool> {
    match c {
        Condition::Compare(l, op, r) => {
            let (l, r) = (value(l, msg, payload)?, value(r, msg, payload)?);
            match op {
                CmpOp::Eq => Some(equal(&l, &r)),
                CmpOp::Ne => Some(!equal(&l, &r)),
                ordering => {
                    let (x, y) = (as_number(&l)?, as_number(&r)?);
                    Some(match ordering {
                        CmpOp::Lt => x < y,
                        CmpOp::Le => x <= y,
                        CmpOp::Gt => x > y,
                        _ => x >= y,
                    })
                }
            }
        }
        // An Undefined operand makes AND/OR Undefined, as IoT's operator tables say.
        Condition::And(a, b) => Some(truth(a, msg, payload)? && truth(b, msg, payload)?),
        Condition::Or(a, b) => Some(truth(a, msg, payload)? || truth(b, msg, payload)?),
    }
}

impl RuleSql {
    /// Applies the rule to one message, for an action that needs a JSON document (Lambda).
    pub fn evaluate(&self, msg: &Message<'_>) -> Outcome {
        let payload: Option<Value> = serde_json::from_slice(msg.payload).ok();
        if let Some(c) = &self.condition {
            if truth(c, msg, payload.as_ref()) != Some(true) {
                return Outcome::Skipped;
            }
        }
        let star = self.select.contains(&SelectItem::All);
        let mut out = Map::new();
        match (&payload, star) {
            (None, true) => {
                return Outcome::Rejected(
                    "payload is not JSON: `SELECT *` passes it as binary, which a Lambda action cannot receive"
                        .into(),
                )
            }
            (Some(v), true) if !v.is_object() => {
                if self.select.len() == 1 {
                    // `SELECT *` alone passes any JSON document through unchanged.
                    return Outcome::Deliver(v.clone());
                }
                return Outcome::Rejected(
                    "payload is JSON but not an object, so `*` cannot be combined with other selected values"
                        .into(),
                );
            }
            _ => {}
        }
        for item in &self.select {
            match item {
                SelectItem::All => {
                    if let Some(Value::Object(fields)) = &payload {
                        for (k, v) in fields {
                            out.insert(k.clone(), v.clone());
                        }
                    }
                }
                SelectItem::Named { value: op, name } => {
                    // Undefined values are left out of the document, as IoT Core does.
                    if let Some(v) = value(op, msg, payload.as_ref()) {
                        out.insert(name.clone(), v);
                    }
                }
            }
        }
        Outcome::Deliver(Value::Object(out))
    }
}

/// Whether `topic` matches the MQTT topic filter `filter` (`+` one level, `#` the rest).
pub fn topic_matches(filter: &str, topic: &str) -> bool {
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn msg<'a>(topic: &'a str, payload: &'a [u8]) -> Message<'a> {
        Message {
            topic,
            payload,
            client_id: Some("t--dev-a"),
            timestamp_ms: 1_700_000_000_000,
        }
    }

    fn run(sql: &str, topic: &str, payload: &str) -> Outcome {
        parse(sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .evaluate(&msg(topic, payload.as_bytes()))
    }

    #[test]
    fn the_deployed_rule_adds_the_device_id_of_the_topic() {
        let sql = twin_aws::l1::topic_rule::rule_sql("t");
        let rule = parse(&sql).expect("the deployed SQL parses");
        assert_eq!(rule.from, "t/iot-data/+");
        assert_eq!(
            rule.evaluate(&msg("t/iot-data/dev-a", br#"{"temperature":21.5}"#)),
            Outcome::Deliver(json!({"temperature": 21.5, "topicDeviceId": "dev-a"}))
        );
    }

    #[test]
    fn a_corpus_of_rules_and_messages_gives_what_iot_core_gives() {
        let cases: &[(&str, &str, &str, Outcome)] = &[
            (
                "SELECT * FROM 'a/+'",
                "a/b",
                r#"{"x":1,"y":{"z":2}}"#,
                Outcome::Deliver(json!({"x":1,"y":{"z":2}})),
            ),
            // `SELECT *` alone passes a non-object JSON document as it is.
            ("SELECT * FROM 'a/+'", "a/b", "[1,2]", Outcome::Deliver(json!([1, 2]))),
            (
                "select x, y.z as deep, topic() AS t, topic(1) as first FROM 'a/#'",
                "a/b/c",
                r#"{"x":1,"y":{"z":2}}"#,
                Outcome::Deliver(json!({"x":1,"deep":2,"t":"a/b/c","first":"a"})),
            ),
            // A field that is not there is Undefined and left out; so is a segment past the end.
            (
                "SELECT missing, topic(9) AS nine, x FROM 'a/+'",
                "a/b",
                r#"{"x":true}"#,
                Outcome::Deliver(json!({"x":true})),
            ),
            (
                "SELECT clientid() AS c, timestamp() AS ts FROM 'a/+'",
                "a/b",
                "not json",
                Outcome::Deliver(json!({"c":"t--dev-a","ts":1_700_000_000_000_i64})),
            ),
            // The alias wins over a payload field of the same name.
            (
                "SELECT *, topic(2) AS id FROM 'a/+'",
                "a/real",
                r#"{"id":"forged","v":1}"#,
                Outcome::Deliver(json!({"id":"real","v":1})),
            ),
            (
                "SELECT * FROM 'a/+' WHERE temperature > 30",
                "a/b",
                r#"{"temperature":31}"#,
                Outcome::Deliver(json!({"temperature":31})),
            ),
            (
                "SELECT * FROM 'a/+' WHERE temperature > 30",
                "a/b",
                r#"{"temperature":30}"#,
                Outcome::Skipped,
            ),
            // Undefined is not true.
            (
                "SELECT * FROM 'a/+' WHERE temperature > 30",
                "a/b",
                r#"{"humidity":80}"#,
                Outcome::Skipped,
            ),
            // A numeric string converts for an ordering comparison.
            (
                "SELECT * FROM 'a/+' WHERE t >= 30",
                "a/b",
                r#"{"t":"30.0"}"#,
                Outcome::Deliver(json!({"t":"30.0"})),
            ),
            (
                "SELECT * FROM 'a/+' WHERE kind = 'hot' AND (t < -5 OR t >= 40.5)",
                "a/b",
                r#"{"kind":"hot","t":-7}"#,
                Outcome::Deliver(json!({"kind":"hot","t":-7})),
            ),
            (
                "SELECT * FROM 'a/+' WHERE kind = 'hot' AND (t < -5 OR t >= 40.5)",
                "a/b",
                r#"{"kind":"hot","t":0}"#,
                Outcome::Skipped,
            ),
            (
                "SELECT * FROM 'a/+' WHERE topic(2) <> 'b' OR n = 10.0",
                "a/b",
                r#"{"n":10}"#,
                Outcome::Deliver(json!({"n":10})),
            ),
            (
                "SELECT * FROM 'a/+' WHERE name = 'it''s' AND ok = true",
                "a/b",
                r#"{"name":"it's","ok":true}"#,
                Outcome::Deliver(json!({"name":"it's","ok":true})),
            ),
            // Different types are not equal.
            (
                "SELECT * FROM 'a/+' WHERE n = '10'",
                "a/b",
                r#"{"n":10}"#,
                Outcome::Skipped,
            ),
            // A non-JSON payload under `*` cannot go to a Lambda action.
            (
                "SELECT *, topic(3) AS topicDeviceId FROM 'a/iot-data/+'",
                "a/iot-data/d",
                "\u{1}\u{2}binary",
                Outcome::Rejected(
                    "payload is not JSON: `SELECT *` passes it as binary, which a Lambda action cannot receive".into(),
                ),
            ),
            (
                "SELECT *, topic(3) AS topicDeviceId FROM 'a/iot-data/+'",
                "a/iot-data/d",
                "42",
                Outcome::Rejected(
                    "payload is JSON but not an object, so `*` cannot be combined with other selected values".into(),
                ),
            ),
            // A WHERE on a field of a non-JSON payload is Undefined: skipped, not rejected.
            (
                "SELECT * FROM 'a/+' WHERE x = 1",
                "a/b",
                "oops",
                Outcome::Skipped,
            ),
        ];
        for (sql, topic, payload, want) in cases {
            assert_eq!(
                &run(sql, topic, payload),
                want,
                "{sql} on {topic} with {payload}"
            );
        }
    }

    #[test]
    fn unsupported_sql_is_an_error_at_its_position() {
        let cases: &[(&str, usize, &str)] = &[
            (
                "SELECT upper(x) AS u FROM 'a'",
                8,
                "upper() is not supported",
            ),
            ("SELECT * FROM a", 15, "expected the topic filter in quotes"),
            ("SELECT * FROM 'a' WHERE x + 1 > 2", 27, "operator `+`"),
            ("SELECT * FROM 'a' WHERE NOT x = 1", 25, "NOT"),
            (
                "SELECT * FROM 'a' WHERE x IN (1, 2)",
                27,
                "comparison operator",
            ),
            ("SELECT * FROM 'a' WHERE x", 26, "comparison operator"),
            ("SELECT * FROM 'a' WHERE (x = 1", 31, "expected `)`"),
            ("SELECT topic(3) FROM 'a'", 8, "needs `AS <name>`"),
            ("SELECT topic(0) AS t FROM 'a'", 14, "whole number from 1"),
            ("SELECT x AS FROM 'a'", 13, "name after AS"),
            ("SELECT a.* FROM 'a'", 10, "expected a field name after `.`"),
            (
                "SELECT x * 2 AS y FROM 'a'",
                10,
                "`*` is only supported alone",
            ),
            ("SELECT * FROM 'a", 15, "never closed"),
            ("SET x = 1 SELECT * FROM 'a'", 1, "SET"),
            ("SELECT * FROM 'a' LIMIT 1", 19, "expected WHERE or the end"),
            ("SELECT \"x\" FROM 'a'", 8, "quoted identifiers"),
            ("SELECT * FROM ''", 15, "empty"),
            ("SELECT * FROM 'a' WHERE x = 1 AND", 34, "expected a field"),
            ("SELECT CASE x WHEN 1 THEN 2 END AS c FROM 'a'", 8, "CASE"),
            ("DELETE FROM 'a'", 1, "expected SELECT"),
        ];
        for (sql, position, fragment) in cases {
            match parse(sql) {
                Ok(r) => panic!("{sql} parsed as {r:?}"),
                Err(e) => {
                    assert_eq!(e.position, *position, "{sql}: {e}");
                    assert!(e.message.contains(fragment), "{sql}: {e}");
                    assert!(e.to_string().contains(&format!("position {position}")));
                }
            }
        }
    }

    #[test]
    fn topic_filters_match_as_mqtt_does() {
        assert!(topic_matches("a/+", "a/b"));
        assert!(!topic_matches("a/+", "a/b/c"));
        assert!(topic_matches("a/#", "a/b/c"));
        assert!(topic_matches("a/#", "a"));
        assert!(!topic_matches("a/b", "a/c"));
    }
}
