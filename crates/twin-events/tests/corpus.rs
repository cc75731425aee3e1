//! The condition language on a corpus of good and bad conditions, checked against a small twin:
//! entity `room-1` with components `t1` (device `temperature-sensor-1`, DOUBLE `temperature`)
//! and `p1` (device `pressure-sensor-1`, DOUBLE `pressure`, INTEGER `hardness`, STRING `mode`,
//! BOOLEAN `open`).

use proptest::prelude::*;
use serde_json::{json, Value};
use twin_events::{
    check, decide, evaluate, parse, Expr, Fire, PropertyRef, Resolved, Schema, ValueType,
};

struct Twin;

impl Schema for Twin {
    fn resolve(&self, r: &PropertyRef) -> Result<Option<Resolved>, String> {
        if r.entity != "room-1" {
            return Err(format!(
                "unknown entity `{}`; entities are room-1",
                r.entity
            ));
        }
        let (device, props): (&str, &[(&str, ValueType)]) = match r.device.as_str() {
            "t1" => (
                "temperature-sensor-1",
                &[("temperature", ValueType::Double)],
            ),
            "p1" => (
                "pressure-sensor-1",
                &[
                    ("pressure", ValueType::Double),
                    ("hardness", ValueType::Integer),
                    ("mode", ValueType::String),
                    ("open", ValueType::Boolean),
                ],
            ),
            other => return Err(format!("unknown device `{other}` in entity `room-1`")),
        };
        props
            .iter()
            .find(|(n, _)| *n == r.property)
            .map(|(_, t)| {
                Some(Resolved {
                    iot_device_id: device.to_string(),
                    value_type: *t,
                })
            })
            .ok_or_else(|| format!("device `{device}` has no property `{}`", r.property))
    }
}

/// Parses and checks; `Err((offset, message))` for the first problem.
fn compile(text: &str) -> Result<Expr, (usize, String)> {
    let mut e = parse(text).map_err(|e| (e.at, e.to_string()))?;
    match check(&mut e, &Twin).into_iter().next() {
        Some(c) => Err((c.span.start, c.message)),
        None => Ok(e),
    }
}

#[test]
fn good_conditions_compile() {
    for text in [
        "room-1.t1.temperature == DOUBLE(30)",
        "room-1.t1.temperature > DOUBLE(43.5)",
        "room-1.t1.temperature >= 30",
        "room-1.t1.temperature < -2.5",
        "room-1.t1.temperature <= INTEGER(3)",
        "room-1.p1.hardness != INTEGER(3)",
        "room-1.p1.hardness > DOUBLE(2.5)",
        "room-1.p1.hardness > LONG(9000000000)",
        "room-1.p1.mode == STRING(\"auto\")",
        "room-1.p1.mode != \"manual\"",
        "room-1.p1.mode == STRING(\"say \\\"hi\\\"\")",
        "room-1.p1.open == BOOLEAN(true)",
        "room-1.p1.open != false",
        "DOUBLE(30) < room-1.t1.temperature",
        "room-1.t1.temperature > room-1.p1.pressure",
        "room-1.t1.temperature > DOUBLE(30) AND room-1.p1.pressure < DOUBLE(2)",
        "room-1.t1.temperature > 30 OR room-1.p1.pressure < 2 AND room-1.p1.open == true",
        "(room-1.t1.temperature > 30 OR room-1.p1.pressure < 2) AND room-1.p1.open == true",
        "((room-1.t1.temperature > 30))",
        "  room-1.t1.temperature>30  ",
    ] {
        if let Err((at, message)) = compile(text) {
            panic!("`{text}` at {at}: {message}");
        }
    }
}

#[test]
fn bad_conditions_say_where_and_what() {
    // (condition, character offset, a piece of the message)
    let table: &[(&str, usize, &str)] = &[
        ("", 0, "expected a property"),
        (
            "room-1.t1.temperature",
            21,
            "expected a comparison operator",
        ),
        ("room-1.t1.temperature = DOUBLE(3)", 22, "equality is `==`"),
        (
            "room-1.t1.temperature > ",
            24,
            "found the end of the condition",
        ),
        (
            "room-1.t1.temperature > DOUBLE(abc)",
            31,
            "a number inside DOUBLE",
        ),
        (
            "room-1.t1.temperature > DOUBLE(3",
            32,
            "`)` closing DOUBLE(",
        ),
        ("room-1.t1.temperature > DOUBLE 3", 31, "`(` after DOUBLE"),
        ("room-1.p1.hardness > INTEGER(2.5)", 29, "whole number"),
        (
            "room-1.p1.hardness > INTEGER(3000000000)",
            29,
            "whole number",
        ),
        ("room-1.p1.open == BOOLEAN(yes)", 26, "true or false"),
        ("room-1.p1.mode == STRING(auto)", 25, "double-quoted string"),
        ("room-1.p1.mode == \"auto", 23, "closing the string"),
        ("t1.temperature > 3", 0, "2 dot-separated parts"),
        ("room-1.t1.temperature > 3 AND", 29, "found the end"),
        (
            "room-1.t1.temperature > 3 and room-1.t1.temperature < 9",
            26,
            "AND, OR or the end",
        ),
        (
            "(room-1.t1.temperature > 3",
            26,
            "`)` closing the `(` at character 1",
        ),
        ("room-1.t1.temperature > 3)", 25, "AND, OR or the end"),
        ("room-1.t1.temperature > 3 # hot", 26, "found `#`"),
        ("room-1.t1.temperature > nan", 24, "found `nan`"),
        // Names and types against the twin.
        ("room-9.t1.temperature > 3", 0, "unknown entity `room-9`"),
        ("room-1.t9.temperature > 3", 0, "unknown device `t9`"),
        ("room-1.t1.humidity > 3", 0, "no property `humidity`"),
        (
            "room-1.t1.temperature == STRING(\"x\")",
            25,
            "is DOUBLE but `STRING(\"x\")` is STRING",
        ),
        (
            "STRING(\"x\") == room-1.t1.temperature",
            0,
            "a DOUBLE compares with DOUBLE(..)",
        ),
        ("room-1.p1.mode > 3", 17, "is STRING but"),
        (
            "room-1.p1.mode < STRING(\"b\")",
            0,
            "compare only with == or !=",
        ),
        ("room-1.p1.open > false", 0, "compare only with == or !="),
        (
            "room-1.t1.temperature > room-1.p1.mode",
            24,
            "is DOUBLE but `room-1.p1.mode` is STRING",
        ),
        ("DOUBLE(1) < DOUBLE(2)", 0, "compares two constants"),
        (
            "room-1.t1.temperature > 3 AND room-1.p1.open == 1",
            48,
            "is BOOLEAN but",
        ),
    ];
    for (text, at, piece) in table {
        match compile(text) {
            Ok(e) => panic!("`{text}` compiled: {e:?}"),
            Err((got_at, message)) => {
                assert!(
                    message.contains(piece),
                    "`{text}`: message `{message}` lacks `{piece}`"
                );
                assert_eq!(got_at, *at, "`{text}`: {message}");
            }
        }
    }
}

fn latest(values: Value) -> impl Fn(&PropertyRef) -> Option<Value> {
    move |p| {
        values
            .get(p.iot_device_id.as_deref()?)?
            .get(&p.property)
            .cloned()
    }
}

#[test]
fn evaluation_against_the_latest_values() {
    let values = json!({
        "temperature-sensor-1": {"temperature": 31.5},
        "pressure-sensor-1": {"pressure": 1.0, "hardness": 3, "mode": "auto", "open": false},
    });
    let table: &[(&str, Option<bool>)] = &[
        ("room-1.t1.temperature > DOUBLE(30)", Some(true)),
        ("room-1.t1.temperature > 31.5", Some(false)),
        ("room-1.t1.temperature >= 31.5", Some(true)),
        ("room-1.p1.hardness == DOUBLE(3)", Some(true)),
        ("room-1.p1.hardness < INTEGER(3)", Some(false)),
        ("room-1.p1.mode == \"auto\"", Some(true)),
        ("room-1.p1.open != true", Some(true)),
        ("room-1.t1.temperature > room-1.p1.pressure", Some(true)),
        // AND binds tighter: true OR (false AND ...) is true.
        (
            "room-1.t1.temperature > 30 OR room-1.p1.pressure > 5 AND room-1.p1.open == true",
            Some(true),
        ),
        (
            "(room-1.t1.temperature > 30 OR room-1.p1.pressure > 5) AND room-1.p1.open == true",
            Some(false),
        ),
    ];
    for (text, want) in table {
        let e = compile(text).expect("compiles");
        assert_eq!(evaluate(&e, &latest(values.clone())), *want, "`{text}`");
    }
}

#[test]
fn a_missing_value_is_unknown_and_unknown_does_not_fire() {
    let only_temperature = json!({"temperature-sensor-1": {"temperature": 40}});
    let read = latest(only_temperature);
    let e = compile("room-1.t1.temperature > 30 AND room-1.p1.pressure > 1").expect("compiles");
    assert_eq!(evaluate(&e, &read), None);
    let e = compile("room-1.t1.temperature < 30 AND room-1.p1.pressure > 1").expect("compiles");
    assert_eq!(evaluate(&e, &read), Some(false));
    let e = compile("room-1.t1.temperature > 30 OR room-1.p1.pressure > 1").expect("compiles");
    assert_eq!(evaluate(&e, &read), Some(true));
    // A reading of the wrong JSON type is unknown, not false.
    let wrong = latest(json!({"temperature-sensor-1": {"temperature": "hot"}}));
    let e = compile("room-1.t1.temperature > 30").expect("compiles");
    assert_eq!(evaluate(&e, &wrong), None);
}

/// A random condition over the twin's numeric properties, as text.
fn condition() -> impl Strategy<Value = String> {
    let cmp = (
        prop::sample::select(vec![
            "room-1.t1.temperature",
            "room-1.p1.pressure",
            "room-1.p1.hardness",
        ]),
        prop::sample::select(vec!["<", "<=", "==", "!=", ">=", ">"]),
        -50i32..50,
        any::<bool>(),
    )
        .prop_map(|(p, op, n, typed)| {
            if typed {
                format!("{p} {op} DOUBLE({n})")
            } else {
                format!("{p} {op} {n}")
            }
        });
    cmp.prop_recursive(4, 16, 2, |inner| {
        (
            inner.clone(),
            prop::sample::select(vec!["AND", "OR"]),
            inner,
        )
            .prop_map(|(a, k, b)| format!("({a}) {k} ({b})"))
    })
}

/// The same condition evaluated directly in Rust (the oracle).
fn oracle(text: &str, t: f64, p: f64, h: f64) -> bool {
    // Small enough to evaluate by splitting on the outermost operator.
    let s = text.trim();
    let mut depth = 0;
    let bytes: Vec<char> = s.chars().collect();
    for kw in [" OR ", " AND "] {
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                '(' => depth += 1,
                ')' => depth -= 1,
                _ => {}
            }
            if depth == 0 && s[i..].starts_with(kw) {
                let (a, b) = (&s[..i], &s[i + kw.len()..]);
                let (x, y) = (oracle(a, t, p, h), oracle(b, t, p, h));
                return if kw == " OR " { x || y } else { x && y };
            }
            i += 1;
        }
    }
    if s.starts_with('(') && s.ends_with(')') {
        return oracle(&s[1..s.len() - 1], t, p, h);
    }
    let parts: Vec<&str> = s.split(' ').collect();
    let value = match parts[0] {
        "room-1.t1.temperature" => t,
        "room-1.p1.pressure" => p,
        _ => h,
    };
    let n: f64 = parts[2]
        .trim_start_matches("DOUBLE(")
        .trim_end_matches(')')
        .parse()
        .expect("number");
    match parts[1] {
        "<" => value < n,
        "<=" => value <= n,
        "==" => value == n,
        "!=" => value != n,
        ">=" => value >= n,
        _ => value > n,
    }
}

proptest! {
    #[test]
    fn parsed_conditions_evaluate_like_the_oracle(
        text in condition(), t in -60i32..60, p in -60i32..60, h in -60i32..60,
    ) {
        let e = compile(&text).map_err(|(at, m)| TestCaseError::fail(format!("{text} at {at}: {m}")))?;
        let values = json!({
            "temperature-sensor-1": {"temperature": f64::from(t)},
            "pressure-sensor-1": {"pressure": f64::from(p), "hardness": h},
        });
        let want = oracle(&text, f64::from(t), f64::from(p), f64::from(h));
        prop_assert_eq!(evaluate(&e, &latest(values)), Some(want));
    }

    #[test]
    fn any_text_parses_or_fails_inside_it(text in "[ -~]{0,40}") {
        if let Err(e) = parse(&text) {
            prop_assert!(e.at <= text.chars().count());
        }
    }

    #[test]
    fn on_change_fires_once_per_rising_edge(evals in prop::collection::vec(prop::option::of(any::<bool>()), 0..40)) {
        let (mut active, mut fired, mut edges) = (false, 0, 0);
        let mut known = false;
        for now in &evals {
            if let Some(v) = now {
                if *v && !known { edges += 1; }
                known = *v;
            }
            let d = decide(Fire::OnChange, active, *now);
            active = d.active;
            fired += usize::from(d.fire);
        }
        prop_assert_eq!(fired, edges);
    }
}
