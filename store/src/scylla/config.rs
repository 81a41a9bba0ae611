//! Connection settings. Plain data, so the command line can parse and check them in a
//! build without the driver (and refuse them there with a clear error).

/// Consistency level of reads and writes, named as in CQL.
///
/// The driver's own levels, mirrored here so the settings do not need the driver to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consistency {
    /// `ANY` (writes only): any node, hinted handoff included.
    Any,
    /// `ONE`: one replica.
    One,
    /// `TWO`: two replicas.
    Two,
    /// `THREE`: three replicas.
    Three,
    /// `QUORUM`: a majority of the replicas across datacenters.
    Quorum,
    /// `ALL`: every replica.
    All,
    /// `LOCAL_QUORUM`: a majority of the replicas in the coordinator's datacenter.
    LocalQuorum,
    /// `EACH_QUORUM`: a majority of the replicas in each datacenter.
    EachQuorum,
    /// `LOCAL_ONE`: one replica in the coordinator's datacenter.
    LocalOne,
    /// `SERIAL`: reads of lightweight-transaction state, across datacenters.
    Serial,
    /// `LOCAL_SERIAL`: reads of lightweight-transaction state, in the local datacenter.
    LocalSerial,
}

#[cfg(feature = "scylla")]
impl From<Consistency> for scylla::statement::Consistency {
    fn from(level: Consistency) -> Self {
        use scylla::statement::Consistency as Driver;
        match level {
            Consistency::Any => Driver::Any,
            Consistency::One => Driver::One,
            Consistency::Two => Driver::Two,
            Consistency::Three => Driver::Three,
            Consistency::Quorum => Driver::Quorum,
            Consistency::All => Driver::All,
            Consistency::LocalQuorum => Driver::LocalQuorum,
            Consistency::EachQuorum => Driver::EachQuorum,
            Consistency::LocalOne => Driver::LocalOne,
            Consistency::Serial => Driver::Serial,
            Consistency::LocalSerial => Driver::LocalSerial,
        }
    }
}

/// Connection settings.
#[derive(Debug, Clone)]
pub struct ScyllaConfig {
    /// Contact points, `host:port`.
    pub nodes: Vec<String>,
    /// The keyspace holding the tables.
    pub keyspace: String,
    /// Replication for `fawkes schema apply`, as CQL (e.g.
    /// `{'class': 'NetworkTopologyStrategy', 'replication_factor': 3}`).
    pub replication: String,
    /// Consistency of reads and writes.
    pub consistency: Consistency,
    /// Most requests in flight from this process.
    pub max_in_flight: usize,
}

impl ScyllaConfig {
    /// Defaults for `nodes`: keyspace `fawkes`, one replica (a development node: production sets
    /// `FAWKES_SCYLLA_REPLICATION` to `NetworkTopologyStrategy` with 3 per datacenter),
    /// `LOCAL_QUORUM`.
    pub fn new(nodes: Vec<String>) -> Self {
        Self {
            nodes,
            keyspace: "fawkes".into(),
            replication: "{'class': 'SimpleStrategy', 'replication_factor': 1}".into(),
            consistency: Consistency::LocalQuorum,
            max_in_flight: 256,
        }
    }
}

#[cfg(all(test, feature = "scylla"))]
mod tests {
    use super::*;
    use scylla::statement::Consistency as Driver;

    #[test]
    fn levels_map_to_the_driver_by_name() {
        let pairs = [
            (Consistency::Any, Driver::Any),
            (Consistency::One, Driver::One),
            (Consistency::Two, Driver::Two),
            (Consistency::Three, Driver::Three),
            (Consistency::Quorum, Driver::Quorum),
            (Consistency::All, Driver::All),
            (Consistency::LocalQuorum, Driver::LocalQuorum),
            (Consistency::EachQuorum, Driver::EachQuorum),
            (Consistency::LocalOne, Driver::LocalOne),
            (Consistency::Serial, Driver::Serial),
            (Consistency::LocalSerial, Driver::LocalSerial),
        ];
        for (ours, driver) in pairs {
            assert_eq!(Driver::from(ours), driver);
            assert_eq!(format!("{ours:?}"), format!("{driver:?}"));
        }
    }
}
