//! DataplaneInsight: observed state written by the control plane, one subscription per ADS stream.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DataplaneInsightSpec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subscriptions: Vec<DiscoverySubscription>,
    /// The dataplane's identity certificate, when its mesh has mTLS on (Kuma 0.5's `mTLS`).
    #[serde(default, rename = "mTLS", skip_serializing_if = "Option::is_none")]
    pub mtls: Option<MtlsInsight>,
}

/// When the dataplane's identity certificate expires and how often it was regenerated.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MtlsInsight {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_expiration_time: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_certificate_regeneration: Option<DateTime<Utc>>,
    /// Certificates issued to the dataplane by the control plane serving it.
    #[serde(default, with = "u64_string")]
    #[schemars(with = "String")]
    pub certificate_regenerations: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DiscoverySubscription {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub control_plane_instance_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_time: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disconnect_time: Option<DateTime<Utc>>,
    #[serde(default)]
    pub status: DiscoverySubscriptionStatus,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DiscoverySubscriptionStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_update_time: Option<DateTime<Utc>>,
    #[serde(default)]
    pub total: DiscoveryServiceStats,
    #[serde(default)]
    pub cds: DiscoveryServiceStats,
    #[serde(default)]
    pub eds: DiscoveryServiceStats,
    #[serde(default)]
    pub lds: DiscoveryServiceStats,
    #[serde(default)]
    pub rds: DiscoveryServiceStats,
}

/// Counters per xDS type. As in Kuma's jsonpb output, the uint64 values are JSON strings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DiscoveryServiceStats {
    #[serde(default, with = "u64_string")]
    #[schemars(with = "String")]
    pub responses_sent: u64,
    #[serde(default, with = "u64_string")]
    #[schemars(with = "String")]
    pub responses_acknowledged: u64,
    #[serde(default, with = "u64_string")]
    #[schemars(with = "String")]
    pub responses_rejected: u64,
}

mod u64_string {
    use super::*;

    pub fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Number(u64),
            Text(String),
        }
        match Either::deserialize(d)? {
            Either::Number(n) => Ok(n),
            Either::Text(s) => s
                .parse()
                .map_err(|_| serde::de::Error::custom(format!("{s:?} is not an unsigned integer"))),
        }
    }
}

impl DataplaneInsightSpec {
    /// Online: some subscription connected and not disconnected.
    pub fn is_online(&self) -> bool {
        self.subscriptions.iter().any(|s| s.connect_time.is_some() && s.disconnect_time.is_none())
    }

    /// The subscription with the latest connect time.
    pub fn latest(&self) -> Option<&DiscoverySubscription> {
        self.subscriptions.iter().max_by_key(|s| s.connect_time)
    }

    /// Responses sent, summed over all subscriptions.
    pub fn total_updates(&self) -> u64 {
        // Saturating: the counters come from outside and must not overflow a sum.
        self.subscriptions
            .iter()
            .fold(0u64, |sum, s| sum.saturating_add(s.status.total.responses_sent))
    }

    /// Responses rejected by Envoy, summed over all subscriptions.
    pub fn total_errors(&self) -> u64 {
        // Saturating: the counters come from outside and must not overflow a sum.
        self.subscriptions
            .iter()
            .fold(0u64, |sum, s| sum.saturating_add(s.status.total.responses_rejected))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: summing counters near u64::MAX panicked `kumactl inspect dataplanes`.
    #[test]
    fn totals_saturate_instead_of_overflowing() {
        let subscription = |sent: u64| DiscoverySubscription {
            status: DiscoverySubscriptionStatus {
                total: DiscoveryServiceStats {
                    responses_sent: sent,
                    responses_rejected: sent,
                    ..Default::default()
                },
                ..Default::default()
            },
            ..Default::default()
        };
        let insight = DataplaneInsightSpec {
            subscriptions: vec![subscription(u64::MAX), subscription(5)],
            mtls: None,
        };
        assert_eq!(insight.total_updates(), u64::MAX);
        assert_eq!(insight.total_errors(), u64::MAX);
    }

    #[test]
    fn counters_are_written_as_strings_and_read_from_either() {
        let stats: DiscoveryServiceStats =
            serde_json::from_str(r#"{"responsesSent":"3","responsesAcknowledged":2}"#).unwrap();
        assert_eq!((stats.responses_sent, stats.responses_acknowledged), (3, 2));
        let json = serde_json::to_value(&stats).unwrap();
        assert_eq!(json["responsesSent"], "3");
    }
}
