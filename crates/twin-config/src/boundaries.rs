//! Cross-cloud boundaries (SPEC §2): the data-path hops whose two ends are on different clouds.
//!
//! The model is provider-neutral on purpose: a hop is a pair of layers and the functions at its
//! ends, and a boundary is a hop whose two layers are on different providers. Which cloud plays
//! which side changes only the `provider` of each [`BoundarySide`]; the provider crates decide
//! how to build the ingress and store the secret, and the deployer decides which of those it can
//! build today.

use serde::Serialize;

use crate::names;
use crate::providers::{Layer, ProviderName, Providers};

/// A hop of the data path between two layers, named by what crosses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Hop {
    /// L1 → L2: the dispatcher hands a device's message to its processor.
    Dispatch,
    /// L2 → L3 hot: the persister writes a record to hot storage.
    Persist,
    /// L3 hot → L3 cold: the hot-to-cold mover writes a chunk object to cold storage.
    HotToCold,
    /// L3 cold → L3 archive: the cold-to-archive mover writes an object to the archive.
    ColdToArchive,
    /// L4 → L3 hot: the twin connector asks the hot reader for a device's values.
    TwinRead,
    /// L2 → L4: the persister sets the twin's properties.
    TwinUpdate,
}

/// Which way the data moves across a boundary. The sender always makes the HTTPS call and the
/// receiver always hosts the ingress; only what the answer carries differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    /// Data goes from sender to receiver (the answer is an acknowledgement).
    Push,
    /// The sender asks and the receiver answers with data (the twin connector's reads).
    Query,
}

impl Direction {
    /// The spelling in `plan` output.
    pub fn as_str(&self) -> &'static str {
        match self {
            Direction::Push => "push",
            Direction::Query => "query",
        }
    }
}

impl Hop {
    /// Every hop, in data-path order.
    pub const ALL: [Hop; 6] = [
        Hop::Dispatch,
        Hop::Persist,
        Hop::HotToCold,
        Hop::ColdToArchive,
        Hop::TwinRead,
        Hop::TwinUpdate,
    ];

    /// The short name used in resource names and output (`hot-to-cold`).
    pub fn slug(&self) -> &'static str {
        match self {
            Hop::Dispatch => "dispatch",
            Hop::Persist => "persist",
            Hop::HotToCold => "hot-to-cold",
            Hop::ColdToArchive => "cold-to-archive",
            Hop::TwinRead => "twin-read",
            Hop::TwinUpdate => "twin-update",
        }
    }

    /// The layer whose function makes the call.
    pub fn sender_layer(&self) -> Layer {
        match self {
            Hop::Dispatch => Layer::L1,
            Hop::Persist | Hop::TwinUpdate => Layer::L2,
            Hop::HotToCold => Layer::L3Hot,
            Hop::ColdToArchive => Layer::L3Cold,
            Hop::TwinRead => Layer::L4,
        }
    }

    /// The layer that hosts the ingress.
    pub fn receiver_layer(&self) -> Layer {
        match self {
            Hop::Dispatch => Layer::L2,
            Hop::Persist | Hop::TwinRead => Layer::L3Hot,
            Hop::HotToCold => Layer::L3Cold,
            Hop::ColdToArchive => Layer::L3Archive,
            Hop::TwinUpdate => Layer::L4,
        }
    }

    /// The local name of the function that sends (see `names::FUNCTION_ROLES`).
    pub fn sender_function(&self) -> &'static str {
        match self {
            Hop::Dispatch => "dispatcher",
            Hop::Persist | Hop::TwinUpdate => "persister",
            Hop::HotToCold => "hot-to-cold-mover",
            Hop::ColdToArchive => "cold-to-archive-mover",
            Hop::TwinRead => "twin-connector",
        }
    }

    /// What the receiver's ingress hands the request to, in the receiving cloud: a function, or
    /// the store the in-cloud hop would have written.
    pub fn receiver_target(&self) -> &'static str {
        match self {
            Hop::Dispatch => "processor",
            Hop::Persist => "hot storage",
            Hop::HotToCold => "cold storage",
            Hop::ColdToArchive => "archive storage",
            Hop::TwinRead => "hot-reader",
            Hop::TwinUpdate => "twin",
        }
    }

    /// Which way the data moves.
    pub fn direction(&self) -> Direction {
        match self {
            Hop::TwinRead => Direction::Query,
            _ => Direction::Push,
        }
    }

    /// The local name of the receiver's ingress function: `ingress-<slug>`.
    pub fn ingress_local_name(&self) -> String {
        format!("ingress-{}", self.slug())
    }
}

/// One end of a boundary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BoundarySide {
    /// The layer at this end (its short name in JSON: `l3-hot`).
    #[serde(serialize_with = "layer_short")]
    pub layer: Layer,
    /// The cloud that hosts it.
    pub provider: ProviderName,
    /// The function (sender) or the target (receiver) at this end, by its local name.
    pub function: &'static str,
}

/// A hop whose two ends are on different clouds: the receiver hosts an HTTPS ingress, the sender
/// gets its URL and the boundary's secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Boundary {
    /// Which hop of the data path.
    pub hop: Hop,
    /// The calling end.
    pub sender: BoundarySide,
    /// The end that hosts the ingress.
    pub receiver: BoundarySide,
    /// Which way the data moves.
    pub direction: Direction,
    /// The cloud name of the receiver's ingress function: `<twin>-ingress-<slug>`.
    pub ingress: String,
    /// The name of the boundary's secret in the sender's secret store:
    /// `<twin>-boundary-<slug>` (valid in AWS Secrets Manager and Azure Key Vault alike). The
    /// name only: the value never leaves the secret stores.
    pub secret: String,
}

impl Boundary {
    /// The boundary of `hop` if its two layers are deployed on different clouds.
    pub fn of(twin: &str, providers: &Providers, hop: Hop) -> Option<Boundary> {
        let (from, to) = (hop.sender_layer(), hop.receiver_layer());
        let (a, b) = (providers.get(from), providers.get(to));
        if a == ProviderName::None || b == ProviderName::None || a == b {
            return None;
        }
        Some(Boundary {
            hop,
            sender: BoundarySide {
                layer: from,
                provider: a,
                function: hop.sender_function(),
            },
            receiver: BoundarySide {
                layer: to,
                provider: b,
                function: hop.receiver_target(),
            },
            direction: hop.direction(),
            ingress: names::function_name(twin, &hop.ingress_local_name()),
            secret: boundary_secret_name(twin, hop),
        })
    }

    /// `l1 aws dispatcher → l2 azure processor`, for messages.
    pub fn describe(&self) -> String {
        format!(
            "{} {} {} → {} {} {}",
            self.sender.layer,
            self.sender.provider,
            self.sender.function,
            self.receiver.layer,
            self.receiver.provider,
            self.receiver.function
        )
    }
}

/// Serializes a layer as its short name, as every other JSON output of the deployer does.
fn layer_short<S: serde::Serializer>(layer: &Layer, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(layer.short())
}

/// The name of a boundary's secret: `<twin>-boundary-<slug>`.
pub fn boundary_secret_name(twin: &str, hop: Hop) -> String {
    format!("{twin}-boundary-{}", hop.slug())
}

/// Every cross-cloud boundary of a twin whose layers are placed as `providers` says, in
/// data-path order. Hops with an end on `none` are not boundaries: that end is not deployed.
pub fn cross_cloud_boundaries(twin: &str, providers: &Providers) -> Vec<Boundary> {
    Hop::ALL
        .iter()
        .filter_map(|hop| Boundary::of(twin, providers, *hop))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLOUDS: [ProviderName; 2] = [ProviderName::Aws, ProviderName::Azure];

    /// Every layer on `cloud`, default settings.
    fn all_on(cloud: ProviderName) -> Providers {
        Providers {
            layer_1: cloud,
            layer_2: cloud,
            layer_3_hot: cloud,
            layer_3_cold: cloud,
            layer_3_archive: cloud,
            layer_4: cloud,
            layer_5: cloud,
            aws: Default::default(),
            azure: Default::default(),
        }
    }

    /// The placement of mix number `n` (bit i = provider of `Layer::IN_FILE_ORDER[i]`) over
    /// `choices`, in base `choices.len()`.
    fn mix(mut n: usize, choices: &[ProviderName]) -> Providers {
        let mut p = all_on(ProviderName::None);
        for layer in Layer::IN_FILE_ORDER {
            p.set(layer, choices[n % choices.len()]);
            n /= choices.len();
        }
        p
    }

    /// The boundaries a mix must have, computed independently of the module: the six hops of
    /// SPEC §2 written out as (sender, receiver) layer pairs.
    fn expected(p: &Providers) -> Vec<(Layer, Layer)> {
        [
            (Layer::L1, Layer::L2),
            (Layer::L2, Layer::L3Hot),
            (Layer::L3Hot, Layer::L3Cold),
            (Layer::L3Cold, Layer::L3Archive),
            (Layer::L4, Layer::L3Hot),
            (Layer::L2, Layer::L4),
        ]
        .into_iter()
        .filter(|(a, b)| {
            let (a, b) = (p.get(*a), p.get(*b));
            a != ProviderName::None && b != ProviderName::None && a != b
        })
        .collect()
    }

    #[test]
    fn every_aws_azure_mix_has_exactly_its_cross_cloud_hops() {
        for n in 0..(1 << 7) {
            let p = mix(n, &CLOUDS);
            let found = cross_cloud_boundaries("t", &p);
            let pairs: Vec<_> = found
                .iter()
                .map(|b| (b.sender.layer, b.receiver.layer))
                .collect();
            assert_eq!(pairs, expected(&p), "mix {n}");
            for b in &found {
                assert_eq!(b.sender.provider, p.get(b.sender.layer), "mix {n}");
                assert_eq!(b.receiver.provider, p.get(b.receiver.layer), "mix {n}");
                assert_ne!(b.sender.provider, b.receiver.provider, "mix {n}");
                assert_eq!(b.ingress, format!("t-ingress-{}", b.hop.slug()));
                assert_eq!(b.secret, format!("t-boundary-{}", b.hop.slug()));
            }
        }
    }

    #[test]
    fn layers_on_none_have_no_boundaries() {
        let choices = [ProviderName::Aws, ProviderName::Azure, ProviderName::None];
        for n in 0..3usize.pow(7) {
            let p = mix(n, &choices);
            let found = cross_cloud_boundaries("t", &p);
            assert_eq!(found.len(), expected(&p).len(), "mix {n}");
            assert!(found.iter().all(|b| b.sender.provider != ProviderName::None
                && b.receiver.provider != ProviderName::None));
        }
    }

    #[test]
    fn single_cloud_twins_have_no_boundaries() {
        for cloud in CLOUDS {
            let p = all_on(cloud);
            assert!(cross_cloud_boundaries("t", &p).is_empty());
        }
    }

    #[test]
    fn a_boundary_names_both_sides() {
        let mut p = all_on(ProviderName::Aws);
        p.set(Layer::L2, ProviderName::Azure);
        p.set(Layer::L3Hot, ProviderName::Azure);
        let found = cross_cloud_boundaries("digital-twin", &p);
        let hops: Vec<_> = found.iter().map(|b| b.hop).collect();
        // L2 and L3 hot on Azure: L1 sends to L2, L3 hot to L3 cold, L4 reads L3 hot, L2
        // updates L4; L2 → L3 hot stays inside Azure.
        assert_eq!(
            hops,
            [
                Hop::Dispatch,
                Hop::HotToCold,
                Hop::TwinRead,
                Hop::TwinUpdate
            ]
        );
        assert_eq!(
            found[0].describe(),
            "l1 aws dispatcher → l2 azure processor"
        );
        assert_eq!(found[0].ingress, "digital-twin-ingress-dispatch");
        assert_eq!(found[2].direction, Direction::Query);
        let json = serde_json::to_value(&found[1]).expect("serializes");
        assert_eq!(json["hop"], "hot-to-cold");
        assert_eq!(json["sender"]["layer"], "l3-hot");
        assert_eq!(json["receiver"]["provider"], "aws");
        assert_eq!(json["secret"], "digital-twin-boundary-hot-to-cold");
    }

    #[test]
    fn every_hop_joins_a_layer_to_one_it_depends_on() {
        for hop in Hop::ALL {
            assert!(
                hop.sender_layer()
                    .dependencies()
                    .contains(&hop.receiver_layer()),
                "{hop:?}"
            );
            assert!(crate::names::FUNCTION_ROLES.contains(&hop.sender_function()));
        }
    }
}
