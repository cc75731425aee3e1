//! The naming rules of each cloud resource kind, as checks that say what is allowed.

use std::fmt;

/// The naming rule of one kind of name.
#[derive(Debug, Clone, Copy)]
pub struct NameRule {
    /// What the name names, e.g. "Lambda function name".
    pub kind: &'static str,
    /// Minimum length.
    pub min: usize,
    /// Maximum length.
    pub max: usize,
    /// Whether the length counts UTF-8 bytes rather than characters.
    pub bytes: bool,
    /// The rule in words, for error messages.
    pub allowed: &'static str,
    chars: fn(char) -> bool,
    first: fn(char) -> bool,
    last: fn(char) -> bool,
    reserved_prefixes: &'static [&'static str],
    forbidden: &'static [&'static str],
}

/// A name that breaks its kind's rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct NameError {
    /// What the name names.
    pub kind: &'static str,
    /// The offending name.
    pub name: String,
    /// What is wrong with it, e.g. "is 70 characters long".
    pub problem: String,
    /// The rule in words.
    pub allowed: &'static str,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the {} `{}` {}; {}",
            self.kind, self.name, self.problem, self.allowed
        )
    }
}

impl NameRule {
    /// Checks `name` against the rule.
    pub fn check(&self, name: &str) -> Result<(), NameError> {
        let fail = |problem: String| NameError {
            kind: self.kind,
            name: name.to_string(),
            problem,
            allowed: self.allowed,
        };
        let (len, unit) = if self.bytes {
            (name.len(), "bytes")
        } else {
            (name.chars().count(), "characters")
        };
        if len == 0 {
            return Err(fail("is empty".to_string()));
        }
        if len < self.min || len > self.max {
            return Err(fail(format!("is {len} {unit} long")));
        }
        if let Some(c) = name.chars().find(|c| !(self.chars)(*c)) {
            return Err(fail(format!("contains {}", show(c))));
        }
        if let Some(c) = name.chars().next().filter(|c| !(self.first)(*c)) {
            return Err(fail(format!("starts with {}", show(c))));
        }
        if let Some(c) = name.chars().last().filter(|c| !(self.last)(*c)) {
            return Err(fail(format!("ends with {}", show(c))));
        }
        if let Some(f) = self.forbidden.iter().find(|f| name.contains(*f)) {
            return Err(fail(format!("contains `{f}`")));
        }
        if let Some(p) = self.reserved_prefixes.iter().find(|p| name.starts_with(*p)) {
            return Err(fail(format!("starts with the reserved prefix `{p}`")));
        }
        Ok(())
    }
}

fn show(c: char) -> String {
    if c.is_control() || c == ' ' {
        format!("{:?}", c)
    } else {
        format!("`{c}`")
    }
}

fn any(_: char) -> bool {
    true
}

fn alnum(c: char) -> bool {
    c.is_ascii_alphanumeric()
}

fn lower_alnum(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

fn letter(c: char) -> bool {
    c.is_ascii_alphabetic()
}

fn word_dash(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

/// A twin name: it prefixes every resource name and names the state file. No `--` and no
/// trailing `-`, so that per-device names are injective (see [`super::DEVICE_SEPARATOR`]).
pub const TWIN_NAME: NameRule = NameRule {
    kind: "twin name",
    min: 1,
    max: 63,
    bytes: false,
    allowed: "twin names are 1-63 characters of A-Z a-z 0-9 - _ starting with a letter, \
              not ending with - and without -- (which separates twin and device in per-device names)",
    chars: word_dash,
    first: letter,
    last: |c| c != '-',
    reserved_prefixes: &[],
    forbidden: &["--"],
};

/// A device id: part of function, thing, policy and topic names.
pub const DEVICE_ID: NameRule = NameRule {
    kind: "device id",
    min: 1,
    max: 128,
    bytes: false,
    allowed: "device ids are 1-128 characters of A-Z a-z 0-9 - _",
    chars: word_dash,
    first: any,
    last: any,
    reserved_prefixes: &[],
    forbidden: &[],
};

/// A property name: a key of every telemetry record and a twin component property.
pub const PROPERTY_NAME: NameRule = NameRule {
    kind: "property name",
    min: 1,
    max: 128,
    bytes: false,
    allowed: "property names are 1-128 characters of A-Z a-z 0-9 - _",
    chars: word_dash,
    first: any,
    last: any,
    reserved_prefixes: &[],
    forbidden: &[],
};

/// A custom processor crate name (a directory under `lambdas/`).
pub const PROCESSOR_CRATE: NameRule = NameRule {
    kind: "processor crate name",
    min: 1,
    max: 64,
    bytes: false,
    allowed: "processor crate names are 1-64 characters of A-Z a-z 0-9 - _ starting with a letter",
    chars: word_dash,
    first: letter,
    last: any,
    reserved_prefixes: &[],
    forbidden: &[],
};

/// An event rule's `name` in `config_events.json` (the key of its stored firing state).
pub const RULE_NAME: NameRule = NameRule {
    kind: "event rule name",
    min: 1,
    max: 64,
    bytes: false,
    allowed: "event rule names are 1-64 characters of A-Z a-z 0-9 - _",
    chars: word_dash,
    first: any,
    last: any,
    reserved_prefixes: &[],
    forbidden: &[],
};

/// AWS Lambda function name.
pub const LAMBDA_FUNCTION: NameRule = NameRule {
    kind: "Lambda function name",
    min: 1,
    max: 64,
    bytes: false,
    allowed: "Lambda function names are 1-64 characters of A-Z a-z 0-9 - _",
    chars: word_dash,
    first: any,
    last: any,
    reserved_prefixes: &[],
    forbidden: &[],
};

/// Amazon S3 bucket name (as this deployer forms them: no dots).
pub const S3_BUCKET: NameRule = NameRule {
    kind: "S3 bucket name",
    min: 3,
    max: 63,
    bytes: false,
    allowed: "S3 bucket names are 3-63 characters of a-z 0-9 -, starting and ending with a letter or digit",
    chars: |c| lower_alnum(c) || c == '-',
    first: lower_alnum,
    last: lower_alnum,
    reserved_prefixes: &["xn--", "sthree-", "amzn-s3-demo-"],
    forbidden: &[],
};

/// AWS IoT thing name.
pub const IOT_THING: NameRule = NameRule {
    kind: "IoT thing name",
    min: 1,
    max: 128,
    bytes: false,
    allowed: "IoT thing names are 1-128 characters of A-Z a-z 0-9 : _ -",
    chars: |c| word_dash(c) || c == ':',
    first: any,
    last: any,
    reserved_prefixes: &[],
    forbidden: &[],
};

/// AWS IoT policy name.
pub const IOT_POLICY: NameRule = NameRule {
    kind: "IoT policy name",
    min: 1,
    max: 128,
    bytes: false,
    allowed: "IoT policy names are 1-128 characters of A-Z a-z 0-9 + = , . @ - _",
    chars: |c| word_dash(c) || "+=,.@".contains(c),
    first: any,
    last: any,
    reserved_prefixes: &[],
    forbidden: &[],
};

/// AWS IoT topic rule name.
pub const IOT_TOPIC_RULE: NameRule = NameRule {
    kind: "IoT topic rule name",
    min: 1,
    max: 128,
    bytes: false,
    allowed: "IoT topic rule names are 1-128 characters of A-Z a-z 0-9 _",
    chars: |c| alnum(c) || c == '_',
    first: any,
    last: any,
    reserved_prefixes: &[],
    forbidden: &[],
};

/// An MQTT topic a device publishes to (AWS IoT: at most 256 bytes, no wildcards).
pub const MQTT_TOPIC: NameRule = NameRule {
    kind: "MQTT topic",
    min: 1,
    max: 256,
    bytes: true,
    allowed: "MQTT topics are 1-256 bytes without the wildcards + and #",
    chars: |c| c != '+' && c != '#' && c != '\0',
    first: |c| c != '$',
    last: any,
    reserved_prefixes: &[],
    forbidden: &[],
};

/// AWS IAM role name.
pub const IAM_ROLE: NameRule = NameRule {
    kind: "IAM role name",
    min: 1,
    max: 64,
    bytes: false,
    allowed: "IAM role names are 1-64 characters of A-Z a-z 0-9 + = , . @ - _",
    chars: |c| word_dash(c) || "+=,.@".contains(c),
    first: any,
    last: any,
    reserved_prefixes: &[],
    forbidden: &[],
};

/// Amazon SQS queue name (standard queue).
pub const SQS_QUEUE: NameRule = NameRule {
    kind: "SQS queue name",
    min: 1,
    max: 80,
    bytes: false,
    allowed: "SQS queue names are 1-80 characters of A-Z a-z 0-9 - _",
    chars: word_dash,
    first: any,
    last: any,
    reserved_prefixes: &[],
    forbidden: &[],
};

/// Amazon DynamoDB table name.
pub const DYNAMODB_TABLE: NameRule = NameRule {
    kind: "DynamoDB table name",
    min: 3,
    max: 255,
    bytes: false,
    allowed: "DynamoDB table names are 3-255 characters of A-Z a-z 0-9 _ - .",
    chars: |c| word_dash(c) || c == '.',
    first: any,
    last: any,
    reserved_prefixes: &[],
    forbidden: &[],
};

/// Amazon EventBridge rule name.
pub const EVENTBRIDGE_RULE: NameRule = NameRule {
    kind: "EventBridge rule name",
    min: 1,
    max: 64,
    bytes: false,
    allowed: "EventBridge rule names are 1-64 characters of A-Z a-z 0-9 . - _",
    chars: |c| word_dash(c) || c == '.',
    first: any,
    last: any,
    reserved_prefixes: &[],
    forbidden: &[],
};

/// API Gateway HTTP API name.
pub const HTTP_API: NameRule = NameRule {
    kind: "HTTP API name",
    min: 1,
    max: 128,
    bytes: false,
    allowed: "HTTP API names are 1-128 characters",
    chars: any,
    first: any,
    last: any,
    reserved_prefixes: &[],
    forbidden: &[],
};

/// AWS IoT TwinMaker workspace id.
pub const TWINMAKER_WORKSPACE: NameRule = NameRule {
    kind: "TwinMaker workspace id",
    min: 1,
    max: 128,
    bytes: false,
    allowed: "TwinMaker workspace ids are 1-128 characters of A-Z a-z 0-9 _ -, not starting with - and ending with a letter or digit",
    chars: word_dash,
    first: |c| alnum(c) || c == '_',
    last: alnum,
    reserved_prefixes: &[],
    forbidden: &[],
};

/// AWS IoT TwinMaker component type id.
pub const TWINMAKER_COMPONENT_TYPE: NameRule = NameRule {
    kind: "TwinMaker component type id",
    min: 1,
    max: 256,
    bytes: false,
    allowed: "TwinMaker component type ids are 1-256 characters of A-Z a-z 0-9 _ . - :",
    chars: |c| word_dash(c) || c == '.' || c == ':',
    first: any,
    last: any,
    reserved_prefixes: &[],
    forbidden: &[],
};

/// AWS IoT TwinMaker entity id (the ids of `config_hierarchy.json`). The API reference gives
/// `[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|^[a-zA-Z0-9][a-zA-Z_\-0-9.:]*[a-zA-Z0-9]+`,
/// 1-128 characters; the UUID form is a case of the second, which needs at least two
/// characters. The pattern is checked as a whole-name match, the way a user reads it.
pub const TWINMAKER_ENTITY_ID: NameRule = NameRule {
    kind: "TwinMaker entity id",
    min: 2,
    max: 128,
    bytes: false,
    allowed: "TwinMaker entity ids are 2-128 characters of A-Z a-z 0-9 _ - . :, starting and ending with a letter or digit",
    chars: |c| word_dash(c) || c == '.' || c == ':',
    first: alnum,
    last: alnum,
    reserved_prefixes: &[],
    forbidden: &[],
};

/// AWS IoT TwinMaker component name (`[a-zA-Z_\-0-9]+`, 1-256 characters).
pub const TWINMAKER_COMPONENT_NAME: NameRule = NameRule {
    kind: "TwinMaker component name",
    min: 1,
    max: 256,
    bytes: false,
    allowed: "TwinMaker component names are 1-256 characters of A-Z a-z 0-9 _ -",
    chars: word_dash,
    first: any,
    last: any,
    reserved_prefixes: &[],
    forbidden: &[],
};

/// Amazon Managed Grafana workspace name.
pub const GRAFANA_WORKSPACE: NameRule = NameRule {
    kind: "Grafana workspace name",
    min: 1,
    max: 255,
    bytes: false,
    allowed: "Grafana workspace names are 1-255 characters of A-Z a-z 0-9 - . _ ~",
    chars: |c| word_dash(c) || c == '.' || c == '~',
    first: any,
    last: any,
    reserved_prefixes: &[],
    forbidden: &[],
};

/// Azure resource group name.
pub const AZURE_RESOURCE_GROUP: NameRule = NameRule {
    kind: "Azure resource group name",
    min: 1,
    max: 90,
    bytes: false,
    allowed: "Azure resource group names are 1-90 letters, digits, - _ . ( ), not ending with .",
    chars: |c| c.is_alphanumeric() || "-_.()".contains(c),
    first: any,
    last: |c| c != '.',
    reserved_prefixes: &[],
    forbidden: &[],
};

/// Azure storage account name.
pub const AZURE_STORAGE_ACCOUNT: NameRule = NameRule {
    kind: "Azure storage account name",
    min: 3,
    max: 24,
    bytes: false,
    allowed: "Azure storage account names are 3-24 characters of a-z 0-9",
    chars: lower_alnum,
    first: any,
    last: any,
    reserved_prefixes: &[],
    forbidden: &[],
};

/// Azure IoT Hub device identity id.
pub const AZURE_IOT_DEVICE: NameRule = NameRule {
    kind: "IoT Hub device id",
    min: 1,
    max: 128,
    bytes: false,
    allowed:
        "IoT Hub device ids are 1-128 characters of A-Z a-z 0-9 - : . + % _ # * ? ! ( ) , = @ ; $ '",
    chars: |c| alnum(c) || "-:.+%_#*?!(),=@;$'".contains(c),
    first: any,
    last: any,
    reserved_prefixes: &[],
    forbidden: &[],
};

/// Name of a function inside an Azure Function App.
pub const AZURE_FUNCTION: NameRule = NameRule {
    kind: "Azure Function name",
    min: 1,
    max: 128,
    bytes: false,
    allowed: "Azure Function names are 1-128 characters of A-Z a-z 0-9 - _ starting with a letter",
    chars: word_dash,
    first: letter,
    last: any,
    reserved_prefixes: &[],
    forbidden: &[],
};

/// A globally unique Azure resource name that is also a DNS label (IoT Hub, Function App,
/// Cosmos DB account, Digital Twins instance, Managed Grafana).
pub const AZURE_DNS_NAME: NameRule = NameRule {
    kind: "Azure resource name",
    min: 3,
    max: 23,
    bytes: false,
    allowed: "these Azure resource names are 3-23 characters of a-z 0-9 -, starting with a letter and ending with a letter or digit",
    chars: |c| lower_alnum(c) || c == '-',
    first: |c| c.is_ascii_lowercase(),
    last: lower_alnum,
    reserved_prefixes: &[],
    forbidden: &[],
};

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(rule: &NameRule, name: &str) -> String {
        match rule.check(name) {
            Ok(()) => "ok".to_string(),
            Err(e) => e.problem,
        }
    }

    #[test]
    fn lambda_names() {
        assert_eq!(problem(&LAMBDA_FUNCTION, "digital-twin-persister"), "ok");
        assert_eq!(problem(&LAMBDA_FUNCTION, &"a".repeat(64)), "ok");
        assert_eq!(
            problem(&LAMBDA_FUNCTION, &"a".repeat(65)),
            "is 65 characters long"
        );
        assert_eq!(problem(&LAMBDA_FUNCTION, "a.b"), "contains `.`");
        assert_eq!(problem(&LAMBDA_FUNCTION, ""), "is empty");
    }

    #[test]
    fn bucket_names() {
        assert_eq!(problem(&S3_BUCKET, "digital-twin-cold-0a1b2c3d"), "ok");
        assert_eq!(problem(&S3_BUCKET, "ab"), "is 2 characters long");
        assert_eq!(
            problem(&S3_BUCKET, &"a".repeat(64)),
            "is 64 characters long"
        );
        assert_eq!(problem(&S3_BUCKET, "Twin-cold"), "contains `T`");
        assert_eq!(problem(&S3_BUCKET, "-twin"), "starts with `-`");
        assert_eq!(problem(&S3_BUCKET, "twin-"), "ends with `-`");
        assert_eq!(problem(&S3_BUCKET, "my_twin"), "contains `_`");
        assert_eq!(
            problem(&S3_BUCKET, "xn--twin"),
            "starts with the reserved prefix `xn--`"
        );
    }

    #[test]
    fn iot_names() {
        assert_eq!(problem(&IOT_THING, "twin-dev:1_a"), "ok");
        assert_eq!(problem(&IOT_THING, "twin dev"), "contains ' '");
        assert_eq!(problem(&IOT_TOPIC_RULE, "digital_twin_iot_data"), "ok");
        assert_eq!(problem(&IOT_TOPIC_RULE, "digital-twin"), "contains `-`");
        assert_eq!(problem(&IOT_POLICY, "a+b=c,d.e@f-g_h"), "ok");
        assert_eq!(problem(&MQTT_TOPIC, "t/iot-data/d"), "ok");
        assert_eq!(problem(&MQTT_TOPIC, "t/iot-data/+"), "contains `+`");
        assert_eq!(problem(&MQTT_TOPIC, "$aws/x"), "starts with `$`");
        assert_eq!(problem(&MQTT_TOPIC, &"ä".repeat(129)), "is 258 bytes long");
    }

    #[test]
    fn other_aws_names() {
        assert_eq!(problem(&IAM_ROLE, &"r".repeat(65)), "is 65 characters long");
        assert_eq!(problem(&DYNAMODB_TABLE, "ab"), "is 2 characters long");
        assert_eq!(problem(&EVENTBRIDGE_RULE, "a/b"), "contains `/`");
        assert_eq!(problem(&TWINMAKER_WORKSPACE, "_ok1"), "ok");
        assert_eq!(problem(&TWINMAKER_WORKSPACE, "-no"), "starts with `-`");
        assert_eq!(problem(&TWINMAKER_WORKSPACE, "no_"), "ends with `_`");
        assert_eq!(problem(&GRAFANA_WORKSPACE, "a~b.c"), "ok");
    }

    #[test]
    fn azure_names() {
        assert_eq!(problem(&AZURE_RESOURCE_GROUP, "twin-rg"), "ok");
        assert_eq!(problem(&AZURE_RESOURCE_GROUP, "twin."), "ends with `.`");
        assert_eq!(problem(&AZURE_STORAGE_ACCOUNT, "twin-sa"), "contains `-`");
        assert_eq!(problem(&AZURE_IOT_DEVICE, "d/1"), "contains `/`");
        assert_eq!(problem(&AZURE_DNS_NAME, "1abc"), "starts with `1`");
    }

    #[test]
    fn error_text_names_the_rule() {
        let e = LAMBDA_FUNCTION.check("a b").unwrap_err();
        assert_eq!(
            e.to_string(),
            "the Lambda function name `a b` contains ' '; Lambda function names are 1-64 characters of A-Z a-z 0-9 - _"
        );
    }
}
